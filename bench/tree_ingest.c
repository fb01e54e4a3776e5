/* Micro-benchmark of the fs view's tree: upsert 1M files shaped like the v1 benchmark
 * (1000 dirs x 4 subdirs x 250 files) from prepared paths, then measure the resident memory
 * per entry and the cost of lookups and of a full re-upsert (a second snapshot).
 *
 * `bench_tree [DIRS] [unique]`: with `unique`, every file name is distinct (21 bytes), the
 * worst case for the name heap, since interning saves nothing. */
#include "fusion/view_fs/tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

int main(int argc, char **argv)
{
    size_t dirs = 1000, subdirs = 4, files = 250;
    char *end = NULL;
    if (argc > 1) {
        errno = 0;
        unsigned long v = strtoul(argv[1], &end, 10);
        dirs = argv[1][0] >= '0' && argv[1][0] <= '9' && !*end && !errno ? v : 0;
    }
    if (argc > 3 || dirs < 1 || dirs > 100000 || (argc > 2 && strcmp(argv[2], "unique"))) {
        fprintf(stderr, "usage: bench_tree [DIRS] [unique]\n"
                        "  DIRS: 1 to 100000 directories of 4 x 250 files (default 1000)\n");
        return 2;
    }
    int unique = argc > 2;
    size_t n = dirs * subdirs * files;
    /* Paths are prepared first so the timing covers the tree alone. */
    char *buf = malloc(n * 48);
    size_t *off = malloc((n + 1) * sizeof(*off));
    if (!buf || !off)
        return 1;
    size_t k = 0, pos = 0;
    for (size_t d = 0; d < dirs; d++)
        for (size_t s = 0; s < subdirs; s++)
            for (size_t f = 0; f < files; f++) {
                off[k++] = pos;
                if (unique)
                    pos += (size_t)sprintf(buf + pos, "/dir_%04zu/sub_%zu/file-%012zu.dat", d, s,
                                           k - 1);
                else
                    pos += (size_t)sprintf(buf + pos, "/dir_%04zu/sub_%zu/file_%04zu.dat", d, s, f);
            }
    off[n] = pos;

    long rss0 = rss_bytes();
    struct fu_tree t;
    if (fu_tree_init(&t) < 0)
        return 1;
    uint16_t lin = fu_tree_lineage(&t, "agent-1", "/mnt/data", "p");
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        struct fu_attr a = {.size = i * 37 % 100000,
                            .mtime = 1706000000.0 + (double)i,
                            .ctime = 1706000000.0,
                            .lineage = lin};
        fu_nid id;
        if (fu_tree_upsert(&t, buf + off[i], off[i + 1] - off[i], false, &a, &id) < 0)
            return 1;
    }
    double t_insert = now() - t0;
    long rss1 = rss_bytes();

    t0 = now();
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        found += fu_tree_lookup(&t, buf + off[i], off[i + 1] - off[i]) != FU_NID_NONE;
    double t_lookup = now() - t0;

    t0 = now();
    for (size_t i = 0; i < n; i++) {
        struct fu_attr a = {.size = i, .mtime = 1706000100.0 + (double)i, .lineage = lin};
        fu_nid id;
        fu_tree_upsert(&t, buf + off[i], off[i + 1] - off[i], false, &a, &id);
    }
    double t_update = now() - t0;

    uint32_t entries = fu_tree_count(&t);
    printf("{\"bench\":\"tree_ingest\",\"names\":\"%s\",\"entries\":%u,\"insert_rows_per_s\":%.0f,"
           "\"update_rows_per_s\":%.0f,\"lookups_per_s\":%.0f,\"rss_bytes_per_entry\":%.1f,"
           "\"structure_bytes_per_entry\":%.1f}\n",
           unique ? "unique" : "v1-shape", entries, n / t_insert, n / t_update, n / t_lookup,
           (double)(rss1 - rss0) / entries, (double)fu_tree_memory(&t) / entries);
    fprintf(
        stderr,
        "tree_ingest (%s names): %u entries: insert %.2fM rows/s, re-upsert %.2fM rows/s, lookup "
        "%.2fM/s; RSS %.1f B/entry (structures %.1f B/entry)\n",
        unique ? "unique" : "v1-shape", entries, n / t_insert / 1e6, n / t_update / 1e6,
        n / t_lookup / 1e6, (double)(rss1 - rss0) / entries, (double)fu_tree_memory(&t) / entries);
    fu_tree_free(&t);
    free(buf);
    free(off);
    return found == n ? 0 : 1;
}
