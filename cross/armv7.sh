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
# std for armv7 is built from Debian's rust-web-src (-Zbuild-std, see the cargo config), not taken
# from libstd-rust-web-dev:armhf: that needs the armhf index of bookworm-security, which Debian's
# mirror served broken ("File has unexpected size ... Mirror sync in progress?") for days, and
# no foreign architecture means nothing else on the machine depends on that index.
install_packages - rustc-web cargo-web rust-web-src gcc-arm-linux-gnueabihf \
  g++-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross qemu-user cmake libclang-dev file
# build-std is unstable; the compiler is a stable release, so it has to be told to allow it
XCARGO_ENV=(RUSTC_BOOTSTRAP=1)
build_and_test
run_tests neon QEMU_CPU=cortex-a7 TRACT_CPU_ARM32_NEON=1 SIGLIPD_EXPECT_INT8_KERNEL=armv7neon_mmm_i32_8x4
run_tests vfp QEMU_CPU=cortex-a7 TRACT_CPU_ARM32_NEON=0 SIGLIPD_EXPECT_INT8_KERNEL=generic_i32_4x2
phase "done: target/cross/$TARGET/release/siglipd"
