/*
 * Instructions executed by a guest under qemu-user (TCG plugin API v1, QEMU 7.2): the
 * hardware-independent cost proxy of tools/arm_cost.py.
 *
 * Each translated block, when it runs, adds its instruction count to the counter of the vCPU
 * (in user mode: the guest thread) that ran it; at exit the sum over threads is written to the
 * file named by the `out=PATH` argument as `insns <total> threads <n>`. A block left early by a
 * fault still counts whole: the rate of that is negligible next to a model's matmul loops.
 *
 * Build (tools/arm_cost.py does it): gcc -shared -fPIC -O2 -I<qemu-7.2>/include/qemu
 */
#include <qemu-plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* one slot per guest thread; threads beyond share slots, which keeps the sum right (atomic) */
#define SLOTS 1024
static uint64_t counts[SLOTS];
static const char *out_path;

static void on_tb_exec(unsigned int vcpu_index, void *udata)
{
    __atomic_fetch_add(&counts[vcpu_index % SLOTS], (uint64_t)(uintptr_t)udata, __ATOMIC_RELAXED);
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
}

static void on_guest_exit(qemu_plugin_id_t id, void *p)
{
    uint64_t total = 0;
    unsigned threads = 0;
    for (int i = 0; i < SLOTS; i++) {
        uint64_t c = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);
        total += c;
        threads += c != 0;
    }
    FILE *f = fopen(out_path, "w");
    if (!f) {
        fprintf(stderr, "insn_count: cannot write %s\n", out_path);
        return;
    }
    fprintf(f, "insns %llu threads %u\n", (unsigned long long)total, threads);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = argv[i] + 4;
        }
    }
    if (!out_path) {
        fprintf(stderr, "insn_count: give out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_atexit_cb(id, on_guest_exit, NULL);
    return 0;
}
