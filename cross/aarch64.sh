#!/usr/bin/env bash
# Build siglipd for 64-bit ARM (Raspberry Pi 4/5 on a 64-bit OS, Jetson) and run the unit,
# parity and HTTP tests under qemu-user, once per CPU model:
#   cortex-a72  (Pi 4)      no dot product: tract's int8 SMLAL fallback kernel
#   cortex-a76  (Pi 5/Orin) dot product: tract's SDOT int8 kernel (arm64simd_mmm_i32_8x8_dot);
#               fp16 arithmetic: its f16 kernels (arm64fp16_mmm_f16_16x8_gen)
# Idempotent: installs what is missing (needs root for apt), reuses target/cross.
# `--packages-only`: install the toolchain and stop; `--build-only`: also build, no tests (.ci/run
# runs both in the background while the x86 tests build, then this script again for the tests).
# Output: target/cross/aarch64-unknown-linux-gnu/release/siglipd
TARGET=aarch64-unknown-linux-gnu
source "$(dirname "$0")/lib.sh"
install_packages arm64 rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
  g++-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross qemu-user cmake libclang-dev file
[ "${1:-}" = --packages-only ] && exit 0
build_and_test
[ "${1:-}" = --build-only ] && exit 0
run_tests cortex-a72 QEMU_CPU=cortex-a72 SIGLIPD_EXPECT_INT8_KERNEL=arm64simd_mmm_i32_8x8
# qemu 7.2 shows the host's /proc/cpuinfo, where tract looks for fp16: state what an A76 has
run_tests cortex-a76 QEMU_CPU=cortex-a76 SIGLIPD_EXPECT_INT8_KERNEL=arm64simd_mmm_i32_8x8_dot \
  TRACT_CPU_ISA=+fp16 SIGLIPD_EXPECT_FP16_KERNEL=arm64fp16_mmm_f16_16x8_gen
phase "done: target/cross/$TARGET/release/siglipd"
