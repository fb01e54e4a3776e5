/* Config files changed from Fusion (update_config, report_config): which names Fusion may
 * use, validation of the whole config with the new text, the backup, and what a refusal
 * leaves behind. */
#include "agent/config_update.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define GOOD                                                                                       \
    "sources:\n  s: {driver: fs, uri: /tmp}\n"                                                     \
    "senders:\n  f: {driver: fusion, uri: \"http://127.0.0.1:1\", credential: {key: k}}\n"         \
    "pipes:\n  p: {source: s, sender: f}\n"

static char dir[64];

static void put(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *get(const char *name)
{
    struct fu_buf b = FU_BUF_INIT;
    if (fu_cfgupd_read(dir, name, &b) < 0) {
        fu_buf_free(&b);
        return NULL;
    }
    char *s = strdup(fu_buf_str(&b));
    fu_buf_free(&b);
    return s;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fustor-cfgupd-XXXXXX");
    assert_non_null(mkdtemp(dir));
    put("default.yaml", GOOD);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static struct fu_strv files_of(const char *name)
{
    struct fu_strv v = {0};
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fu_strv_push(&v, path);
    return v;
}

static void test_fusion_may_name_only_plain_yaml_files(void **state)
{
    (void)state;
    assert_true(fu_config_file_name_ok("default.yaml"));
    assert_true(fu_config_file_name_ok("site-2_b.yml"));
    assert_false(fu_config_file_name_ok("../default.yaml"));
    assert_false(fu_config_file_name_ok("sub/default.yaml"));
    assert_false(fu_config_file_name_ok(".hidden.yaml"));
    assert_false(fu_config_file_name_ok("default.yaml.bak"));
    assert_false(fu_config_file_name_ok("default"));
    assert_false(fu_config_file_name_ok(""));
    assert_false(fu_config_file_name_ok("a b.yaml"));
}

static void test_an_invalid_update_changes_nothing(void **state)
{
    (void)state;
    struct fu_strv files = files_of("default.yaml");
    char active[128];
    snprintf(active, sizeof(active), "%s/default.yaml", dir);
    struct fu_diags d;
    fu_diags_init(&d);
    const char *bad = "pipes:\n  p: {source: nowhere, sender: f}\n";
    assert_int_equal(fu_cfgupd_apply(dir, &files, active, "default.yaml", bad, strlen(bad), &d),
                     -EINVAL);
    assert_true(d.n_errors > 0);
    char *now = get("default.yaml");
    assert_string_equal(now, GOOD);
    free(now);
    assert_null(get("default.yaml.bak"));
    assert_null(get(".default.yaml.new")); /* no temporary file left */
    fu_diags_free(&d);
    fu_strv_free(&files);
}

static void test_a_valid_update_keeps_the_old_file_as_bak(void **state)
{
    (void)state;
    struct fu_strv files = files_of("default.yaml");
    char active[128];
    snprintf(active, sizeof(active), "%s/default.yaml", dir);
    struct fu_diags d;
    fu_diags_init(&d);
    const char *next =
        "sources:\n  s: {driver: fs, uri: /tmp}\n"
        "senders:\n  f: {driver: fusion, uri: \"http://127.0.0.1:1\", credential: {key: k}}\n"
        "  g: {driver: fusion, uri: \"http://127.0.0.1:2\"}\n"
        "pipes:\n  p: {source: s, sender: f}\n  q: {source: s, sender: g, batch_size: 5}\n";
    assert_int_equal(fu_cfgupd_apply(dir, &files, active, "default.yaml", next, strlen(next), &d),
                     0);
    char *now = get("default.yaml"), *bak = get("default.yaml.bak");
    assert_string_equal(now, next);
    assert_string_equal(bak, GOOD);
    free(now);
    free(bak);
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "%s/default.yaml", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* it may hold keys */
    fu_diags_free(&d);
    fu_strv_free(&files);
}

static void test_a_new_file_is_validated_with_the_others(void **state)
{
    (void)state;
    struct fu_strv files = files_of("default.yaml");
    char active[128];
    snprintf(active, sizeof(active), "%s/default.yaml", dir);
    struct fu_diags d;
    fu_diags_init(&d);
    /* defines a pipe whose source is in default.yaml: valid only together */
    const char *extra = "senders:\n  g: {driver: http, uri: \"http://127.0.0.1:2\"}\n"
                        "pipes:\n  other: {source: s, sender: g}\n";
    assert_int_equal(fu_cfgupd_apply(dir, &files, active, "extra.yaml", extra, strlen(extra), &d),
                     0);
    char *now = get("extra.yaml");
    assert_string_equal(now, extra);
    free(now);
    assert_null(get("extra.yaml.bak"));                /* nothing to keep */
    const char *dup = "sources:\n  s: {driver: fs}\n"; /* uri missing */
    assert_int_equal(fu_cfgupd_apply(dir, &files, active, "bad.yaml", dup, strlen(dup), &d),
                     -EINVAL);
    assert_null(get("bad.yaml"));
    fu_diags_free(&d);
    fu_strv_free(&files);
}

static void test_a_bad_name_is_refused_before_any_write(void **state)
{
    (void)state;
    struct fu_strv files = files_of("default.yaml");
    struct fu_diags d;
    fu_diags_init(&d);
    assert_int_equal(fu_cfgupd_apply(dir, &files, NULL, "../escape.yaml", GOOD, strlen(GOOD), &d),
                     -EINVAL);
    assert_int_equal(d.n_errors, 1);
    char path[128];
    snprintf(path, sizeof(path), "%s/../escape.yaml", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    fu_diags_free(&d);
    fu_strv_free(&files);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fusion_may_name_only_plain_yaml_files),
        cmocka_unit_test_setup_teardown(test_an_invalid_update_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_valid_update_keeps_the_old_file_as_bak, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_new_file_is_validated_with_the_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_bad_name_is_refused_before_any_write, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
