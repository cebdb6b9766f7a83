#!/usr/bin/env bash
# Build siglipd for 32-bit Raspberry Pi OS (armv7, hard float) and run the unit, parity and
# HTTP tests under qemu-arm (Cortex-A7, NEON kernels forced on: tract does not probe them on armv7).
# Idempotent: installs what is missing (needs root for apt), reuses target/cross.
TARGET=armv7-unknown-linux-gnueabihf
source "$(dirname "$0")/lib.sh"
install_packages armhf rustc-web cargo-web libstd-rust-web-dev:armhf gcc-arm-linux-gnueabihf \
  g++-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross qemu-user cmake libclang-dev file
build_and_test
run_tests cortex-a7 QEMU_CPU=cortex-a7 TRACT_CPU_ARM32_NEON=1
phase "done: target/cross/$TARGET/release/siglipd"
