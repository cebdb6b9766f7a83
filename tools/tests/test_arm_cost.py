"""tools/arm_cost.py: the parts that do not need qemu (name demangling, symbol lookup, the
layer extrapolation). The counting itself is exercised by running the tool (docs/profile-int8.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import arm_cost  # noqa: E402


def test_rust_legacy_names_are_demangled():
    d = arm_cost.demangle
    assert d("_ZN10tract_data6tensor6Tensor12natural_cast17h0123456789abcdefE") == "tract_data::tensor::Tensor::natural_cast"
    assert d("_ZN12tract_linalg5frame3mmm7storage11OutputStore13set_from_tile17he575828d956ac28dE.llvm.1046") == \
        "tract_linalg::frame::mmm::storage::OutputStore::set_from_tile"
    assert d("_ZN10tract_core4plan24SimpleState$LT$F$C$O$GT$10reset_turn17h9f8407b46ca0f56dE") == \
        "tract_core::plan::SimpleState<F,O>::reset_turn"
    assert d("arm64simd_mmm_f32_8x8_gen_0_23_9") == "arm64simd_mmm_f32_8x8_gen_0_23_9"


def test_unnamed_blocks_take_the_preceding_function_after_the_load_bias():
    import pytest

    t = arm_cost.SymbolTable.__new__(arm_cost.SymbolTable)
    # kernel_a has an ELF size (Rust), kernel_b none (assembly without `.size`)
    t.addrs, t.sizes, t.names = [0x1000, 0x2000, 0x3000], [0x100, 0, 0], ["kernel_a", "kernel_b", "last"]
    t.by_name = dict(zip(t.names, t.addrs))
    t.end, t.bias = 0x3000 + (1 << 20), 0
    bias = 0x55_0000_0000
    # two blocks vote for the true bias, one stale name votes for another
    t.learn_bias([(bias + 0x1000, "kernel_a"), (bias + 0x2000, "kernel_b"), (0x42, "last")])
    assert t.bias == bias
    assert t.name(bias + 0x2010) == "kernel_b"
    assert t.name(bias + 0x10ff) == "kernel_a"
    assert t.name(bias + 0x1fff) == t.UNNAMED  # past kernel_a's size
    assert t.name(bias + 0x500) == t.LIBS  # before the first function
    assert t.name(0x7f00_0000_0000) == t.LIBS  # a shared library's mapping
    # a split vote is refused, not guessed
    with pytest.raises(SystemExit):
        t.learn_bias([(bias + 0x1000, "kernel_a"), (0x42, "last"), (0x99, "kernel_b")])


def test_layers_extrapolate_linearly_and_rows_pair_by_cpu_and_form():
    row = lambda cpu, p, form, insns, macs: dict(cpu=cpu, precision=p, int8_form=form, insns_per_image=insns, macs=macs)  # noqa: E731
    l1 = [row("a76", "fp32", None, 100, 300), row("a76", "int8", "static", 60, 300), row("a72", "fp32", None, 100, 300)]
    l2 = [row("a76", "fp32", None, 180, 560), row("a76", "int8", "static", 95, 560)]
    out = arm_cost.extrapolate_rows(l1, 1, l2, 2, 12)
    assert [(r["cpu"], r["precision"]) for r in out] == [("a76", "fp32"), ("a76", "int8")], "a72 has no 2-layer row"
    fp32, int8 = out
    assert fp32["insns_per_image"] == 100 + 11 * 80 and fp32["macs"] == 300 + 11 * 260
    assert int8["insns_per_image"] == 60 + 11 * 35 and int8["insns_per_layer"] == 35
    # from 2 and 4 layers the same line
    l4 = [row("a76", "fp32", None, 340, 1080)]
    assert arm_cost.extrapolate_rows(l2, 2, l4, 4, 12)[0]["insns_per_image"] == 180 + 10 * 80
