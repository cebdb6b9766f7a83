#!/usr/bin/env bash
# Build siglipd for 32-bit Raspberry Pi OS (armv7, hard float) and run the unit, parity and
# HTTP tests under qemu-arm, twice:
#   neon     tract's NEON kernels (armv7neon_mmm_i32_8x4 for int8), as on every Pi 2/3/4/5
#   vfp      NEON switched off: tract's portable fallback kernels
# tract decides NEON from /proc/cpuinfo, which under qemu-user is not the emulated CPU's, so the
# TRACT_CPU_ARM32_NEON knob states it either way.
# Idempotent: installs what is missing (needs root for apt), reuses target/cross.
TARGET=armv7-unknown-linux-gnueabihf
source "$(dirname "$0")/lib.sh"
install_packages armhf rustc-web cargo-web libstd-rust-web-dev:armhf gcc-arm-linux-gnueabihf \
  g++-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross qemu-user cmake libclang-dev file
build_and_test
run_tests neon QEMU_CPU=cortex-a7 TRACT_CPU_ARM32_NEON=1 SIGLIPD_EXPECT_INT8_KERNEL=armv7neon_mmm_i32_8x4
run_tests vfp QEMU_CPU=cortex-a7 TRACT_CPU_ARM32_NEON=0
phase "done: target/cross/$TARGET/release/siglipd"
