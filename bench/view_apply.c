/* In-process ingest: rows/s through the fs view's whole apply path (fu_view_apply: the write
 * lock, arbitration, the tree, the aggregates and, with a journal, the batch's encoding and
 * append), from batches parsed beforehand, so neither HTTP nor JSON is in the figure.
 *
 * `bench_apply [FILES] [DIRS] [JOURNAL_DIR]`: FILES snapshot rows (default 1M) spread over
 * DIRS directories (default 20000, as the agent benchmarks' tree), in batches of 1000; then
 * the same rows again as realtime rows (a second pass, every row an update). With
 * JOURNAL_DIR the view journals to it (fsync per batch, the default policy). One JSON line on
 * stdout. */
#include "fusion/view.h"
#include "fusion/journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One pass over every batch; returns the seconds it took, or -1 if a batch failed. */
static double pass(struct fu_view *v, struct fu_row *rows, size_t n, const char *paths,
                   enum fu_row_src src, double recv)
{
    double t0 = now();
    for (size_t i = 0; i < n; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        for (size_t j = 0; j < k; j++)
            rows[i + j].src = (uint8_t)src;
        long rc = fu_view_apply(v, rows + i, k, paths, recv, 0, "bench", "/bench", NULL, 0,
                                "p", 0, NULL);
        if (rc != (long)k) {
            fprintf(stderr, "bench_apply: batch at row %zu: %ld\n", i, rc);
            return -1;
        }
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    size_t dirs = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    const char *jdir = argc > 3 ? argv[3] : NULL;
    if (!n || !dirs) {
        fprintf(stderr, "usage: bench_apply [FILES] [DIRS] [JOURNAL_DIR]\n");
        return 2;
    }
    char *paths = malloc(n * 48);
    struct fu_row *rows = calloc(n, sizeof(*rows));
    if (!paths || !rows) {
        fprintf(stderr, "bench_apply: out of memory\n");
        return 1;
    }
    size_t per = (n + dirs - 1) / dirs, off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = i / per;
        int len = sprintf(paths + off, "/g%03zu/d%05zu/file_%04zu.dat", d / 100, d, i % per);
        rows[i] = (struct fu_row){.op = FU_ROW_UPSERT, .atomic = true, .has_mtime = true,
                                  .size = i % 100000, .mtime = 1706000000.0 + (double)i,
                                  .ctime = 1706000000.0, .path_off = off,
                                  .path_len = (size_t)len};
        off += (size_t)len + 1;
    }
    struct fu_view v;
    if (fu_view_init(&v, "bench", 30, 3600) < 0) {
        fprintf(stderr, "bench_apply: cannot make the view\n");
        return 1;
    }
    bool damaged = false;
    if (jdir && fu_view_open_storage(&v, jdir, FU_FSYNC_BATCH, 0.01, 2, &damaged) < 0) {
        fprintf(stderr, "bench_apply: cannot open the journal in %s\n", jdir);
        return 1;
    }
    /* Realtime rows come a minute after the snapshot's mtimes would let them count as old. */
    double snap = pass(&v, rows, n, paths, FU_SRC_SNAPSHOT, 1706000000.0 + (double)n + 60);
    for (size_t i = 0; i < n; i++)
        rows[i].mtime += 1;
    double rt = pass(&v, rows, n, paths, FU_SRC_REALTIME, 1706000000.0 + (double)n + 120);
    int ok = snap > 0 && rt > 0;
    if (ok)
        printf("{\"bench\":\"view_apply\",\"rows\":%zu,\"dirs\":%zu,\"journal\":%s,"
               "\"snapshot_rows_per_s\":%.0f,\"realtime_rows_per_s\":%.0f}\n",
               n, dirs, jdir ? "true" : "false", n / snap, n / rt);
    fu_view_free(&v);
    free(paths);
    free(rows);
    return ok ? 0 : 1;
}
