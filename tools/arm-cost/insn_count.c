/*
 * Instructions executed by a guest under qemu-user (TCG plugin API v1, QEMU 7.2): the
 * hardware-independent cost proxy of tools/arm_cost.py.
 *
 * Each translated block, when it runs, adds its instruction count to the counter of the vCPU
 * (in user mode: the guest thread) that ran it; at exit the sum over threads is written to the
 * file named by the `out=PATH` argument as `insns <total> threads <n>`, then one line
 * `sym <count> <vaddr> <symbol>` per function of the guest binary (the symbol of each block's
 * first instruction by qemu's best-effort ELF lookup, and one block address in it) and one line
 * `addr <count> <vaddr>` per block qemu found no symbol for (assembly without a `.size`, like
 * tract's matmul kernels, or shared libraries): tools/arm_cost.py names those from the binary's
 * symbol table. Last, `dropped <count>`: instructions of blocks that found no slot (table full),
 * in the total but in no function. A block left early by a fault still counts whole: the rate of that is
 * negligible next to a model's matmul loops.
 *
 * Build (tools/arm_cost.py does it): gcc -shared -fPIC -O2 -I<qemu-7.2>/include/qemu
 */
#include <qemu-plugin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* one slot per guest thread; threads beyond share slots, which keeps the sum right (atomic) */
#define SLOTS 1024
static uint64_t counts[SLOTS];
static const char *out_path;

/* per-symbol counts: qemu hands out one static string per symbol, so its address is the key */
#define SYMBOLS 65536
static struct symbol {
    const char *name; /* NULL: a free slot; "" with vaddr: an unnamed block */
    uint64_t vaddr;
    uint64_t count;
} symbols[SYMBOLS];
static pthread_mutex_t symbols_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t dropped;

/* what a block adds when it runs: its length, to its thread's and its symbol's counters */
struct block {
    uint64_t n;
    struct symbol *symbol;
};

/* named blocks share their symbol's slot; unnamed ones get a slot per block address */
static struct symbol *symbol_slot(const char *name, uint64_t vaddr)
{
    uint64_t key = name[0] ? (uintptr_t)name : vaddr;
    uint64_t h = (key >> 2) % SYMBOLS;
    pthread_mutex_lock(&symbols_lock);
    for (unsigned i = 0; i < SYMBOLS; i++, h = (h + 1) % SYMBOLS) {
        struct symbol *s = &symbols[h];
        if (s->name == NULL || (s->name == name && (name[0] || s->vaddr == vaddr))) {
            if (s->name == NULL) {
                s->name = name;
                s->vaddr = vaddr;
            }
            pthread_mutex_unlock(&symbols_lock);
            return s;
        }
    }
    pthread_mutex_unlock(&symbols_lock);
    return NULL; /* table full: counted in the total only */
}

static void on_tb_exec(unsigned int vcpu_index, void *udata)
{
    struct block *b = udata;
    __atomic_fetch_add(&counts[vcpu_index % SLOTS], b->n, __ATOMIC_RELAXED);
    if (b->symbol) {
        __atomic_fetch_add(&b->symbol->count, b->n, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&dropped, b->n, __ATOMIC_RELAXED);
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct block *b = malloc(sizeof *b); /* lives as long as the translation may run: never freed */
    b->n = qemu_plugin_tb_n_insns(tb);
    const char *name = b->n ? qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0)) : NULL;
    b->symbol = symbol_slot(name ? name : "", qemu_plugin_tb_vaddr(tb));
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, b);
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
    for (int i = 0; i < SYMBOLS; i++) {
        uint64_t c = __atomic_load_n(&symbols[i].count, __ATOMIC_RELAXED);
        if (c && symbols[i].name[0]) {
            fprintf(f, "sym %llu %llx %s\n", (unsigned long long)c, (unsigned long long)symbols[i].vaddr, symbols[i].name);
        } else if (c) {
            fprintf(f, "addr %llu %llx\n", (unsigned long long)c, (unsigned long long)symbols[i].vaddr);
        }
    }
    fprintf(f, "dropped %llu\n", (unsigned long long)__atomic_load_n(&dropped, __ATOMIC_RELAXED));
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
