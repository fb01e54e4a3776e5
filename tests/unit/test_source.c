/* A running source: a snapshot that starts while inotify's initial walk is still under way
 * lists a directory only once it is watched, so that nothing created after the listing is
 * missed. */
#include "agent/source.h"
#include "common/sets.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define TOP 20
#define SUB 250 /* TOP * (SUB + 1) + 1 directories */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void make_tree(char *root)
{
    assert_non_null(mkdtemp(root));
    char p[256];
    for (int i = 0; i < TOP; i++) {
        snprintf(p, sizeof(p), "%s/t%02d", root, i);
        assert_int_equal(mkdir(p, 0755), 0);
        for (int k = 0; k < SUB; k++) {
            snprintf(p, sizeof(p), "%s/t%02d/s%03d", root, i, k);
            assert_int_equal(mkdir(p, 0755), 0);
        }
    }
}

static void remove_tree(const char *root)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

/* What the agent's walks do before listing a directory (the gate), and then what a user
 * might do the moment after: a file appears in it. The watch must see it. */
static unsigned gate_then_create(struct fu_source *s, const char *root, const char *path,
                                 unsigned *waited)
{
    if (!fu_source_gate(s, path, 0)) {
        ++*waited;
        while (!fu_source_gate(s, path, 1.0))
            ;
    }
    char p[300];
    snprintf(p, sizeof(p), "%s%s/new", root, path);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
    return 1;
}

/* The directories below `path` (one level), in the order the kernel lists them: the reverse
 * of the order in which the watcher's walk (a stack) takes them. */
static unsigned subdirs(const char *root, const char *path, char names[][32], unsigned max)
{
    char p[300];
    snprintf(p, sizeof(p), "%s%s", root, path);
    DIR *d = opendir(p);
    assert_non_null(d);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;)
        if (e->d_type == DT_DIR && e->d_name[0] != '.')
            snprintf(names[n++], 32, "%.31s", e->d_name);
    closedir(d);
    return n;
}

/* The distinct files named `new` reported (a file's creation and its close can come as two
 * rows when the first was taken before the second arrived). */
struct news {
    struct fu_pathmap seen;
    unsigned n;
};

static void count_new(void *ctx, const struct fu_watch_row *r)
{
    struct news *c = ctx;
    bool created = false;
    if (r->op == FU_WATCH_UPSERT && r->path_len >= 4 &&
        !memcmp(r->path + r->path_len - 4, "/new", 4) &&
        fu_pathmap_put(&c->seen, r->path, r->path_len, &created) != FU_SET_NONE && created)
        c->n++;
}

static void test_a_snapshot_during_the_watch_walk_lists_only_watched_directories(void **state)
{
    (void)state;
    char root[] = "/tmp/fu-source-XXXXXX";
    make_tree(root);
    struct fu_source *s;
    struct fu_source_opts so = {.id = "t", .root = root, .bus_capacity = 100000};
    assert_int_equal(fu_source_start(&s, &so), 0);
    struct fu_bus *bus = fu_source_bus(s);
    struct fu_bus_sub *sub = fu_bus_subscribe(bus);
    double t0 = now();
    while (!fu_source_ready(s) && now() - t0 < 30)
        usleep(50);
    assert_true(fu_source_ready(s));

    /* A walk starts at once, as the leader's snapshot does, with each directory gated; it
     * takes them in the order the watcher's walk reaches last. */
    static char top[TOP][32], below[SUB][32];
    unsigned made = 0, waited = 0;
    made += gate_then_create(s, root, "/", &waited);
    unsigned nt = subdirs(root, "", top, TOP);
    for (unsigned i = 0; i < nt; i++) {
        char p[80];
        snprintf(p, sizeof(p), "/%.31s", top[i]);
        made += gate_then_create(s, root, p, &waited);
        unsigned ns = subdirs(root, p, below, SUB);
        for (unsigned j = 0; j < ns; j++) {
            snprintf(p, sizeof(p), "/%.31s/%.31s", top[i], below[j]);
            made += gate_then_create(s, root, p, &waited);
        }
    }
    unsigned dirs = TOP * (SUB + 1) + 1;
    assert_int_equal(made, dirs);
    print_message("    %u of %u directories waited for their watch\n", waited, dirs);

    /* Every file made right after its directory passed the gate is reported. */
    struct news seen = {0};
    t0 = now();
    while (seen.n < dirs && now() - t0 < 30) {
        struct pollfd p = {.fd = fu_bus_sub_fd(sub), .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            eventfd_t v;
            eventfd_read(p.fd, &v);
        }
        uint64_t upto;
        fu_bus_peek(bus, sub, 100000, count_new, &seen, &upto);
        fu_bus_commit(bus, sub, upto);
    }
    assert_false(fu_bus_take_overflow(bus, sub));
    assert_int_equal(seen.n, dirs);
    fu_pathmap_free(&seen.seen);

    /* Once the walk is over, any path passes at once. */
    assert_true(fu_source_gate(s, "/t00/s000", 0));
    assert_true(fu_source_gate(s, "/not/there", 0));
    fu_bus_unsubscribe(bus, sub);
    fu_source_stop(s);
    remove_tree(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_snapshot_during_the_watch_walk_lists_only_watched_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
