/* Config loading, merging and validation, as a specification: the seeds' configs load
 * verbatim, and every kind of bad input gets a file:line:col error that says what was
 * expected. Each test builds its own $FUSTOR_HOME in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/fsutil.h"
#include "common/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

struct home {
    char dir[64];
};

static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", path, path);
    assert_int_equal(system(cmd), 0);
}

static void home_new(struct home *h)
{
    snprintf(h->dir, sizeof(h->dir), "/tmp/fu-test-cfg-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/fusion-config", h->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/agent-config", h->dir);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void home_put(struct home *h, const char *rel, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", h->dir, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads, and returns the diagnostics as one string of lines for substring checks. */
static int load(struct fu_config *cfg, enum fu_cfg_kind kind, const char *home, const char *file,
                struct fu_diags *d)
{
    fu_diags_init(d);
    return fu_config_load(cfg, kind, home, file, d);
}

static char *diag_text(const struct fu_diags *d)
{
    struct fu_buf b = FU_BUF_INIT;
    for (size_t i = 0; i < d->n; i++) {
        char *s = fu_diag_format(&d->v[i]);
        fu_buf_printf(&b, "%s\n", s);
        free(s);
    }
    return fu_buf_detach(&b);
}

#define assert_diag_contains(d, needle)                                                            \
    do {                                                                                           \
        char *t_ = diag_text(d);                                                                   \
        if (!strstr(t_, needle))                                                                   \
            fail_msg("expected a diagnostic containing [%s], got:\n%s", needle, t_);               \
        free(t_);                                                                                  \
    } while (0)

/* Loads a single fusion-config/default.yaml with `text`; expects failure and `needle`. */
static void expect_fusion_error(const char *text, const char *needle)
{
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", text);
    struct fu_config cfg;
    struct fu_diags d;
    int rc = load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d);
    if (rc != -EINVAL) {
        char *t = diag_text(&d);
        fail_msg("expected errors for:\n%s\ngot rc=%d and:\n%s", text, rc, t);
    }
    assert_diag_contains(&d, needle);
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void expect_agent_error(const char *text, const char *needle)
{
    struct home h;
    home_new(&h);
    home_put(&h, "agent-config/default.yaml", text);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_AGENT, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, needle);
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static const char *GOOD_FUSION = "receivers:\n"
                                 "  r1:\n"
                                 "    driver: http\n"
                                 "    port: 18888\n"
                                 "    api_keys:\n"
                                 "      - key: k1\n"
                                 "        pipe_id: p1\n"
                                 "views:\n"
                                 "  v1:\n"
                                 "    driver: fs\n"
                                 "pipes:\n"
                                 "  p1:\n"
                                 "    receiver: r1\n"
                                 "    views: [v1]\n";

static const struct fu_cfg_fpipe *fpipe(const struct fu_config *c, const char *id)
{
    return (const void *)fu_cfg_find(&c->fusion.pipes, sizeof(struct fu_cfg_fpipe), id);
}

/* ------------------------------------------------------------ the seeds */

static void test_seed000_fusion_config_validates_verbatim(void **state)
{
    (void)state;
    struct fu_config cfg;
    struct fu_diags d;
    int rc = load(&cfg, FU_CFG_FUSION, FU_TEST_FIXTURES "/seed000", NULL, &d);
    if (rc != 0) {
        char *t = diag_text(&d);
        fail_msg("seed 000 fusion config: %s", t);
    }
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(d.n_warnings, 0);
    assert_int_equal(cfg.fusion.port, 8101);
    assert_string_equal(cfg.fusion.logging.level, "INFO");
    assert_int_equal(cfg.fusion.receivers.n, 1);
    const struct fu_cfg_receiver *r = cfg.fusion.receivers.v;
    assert_string_equal(r->it.id, "http-main");
    assert_int_equal(r->port, 18888);
    assert_string_equal(r->bind_host, "0.0.0.0");
    assert_int_equal(r->api_keys.n, 1);
    const struct fu_cfg_api_key *k = r->api_keys.v;
    assert_string_equal(k->key, "my-secure-api-key");
    assert_string_equal(k->pipe_id.id, "research-sync");
    const struct fu_cfg_view *v = cfg.fusion.views.v;
    assert_string_equal(v->it.id, "research-view");
    assert_true(fabs(v->hot_file_threshold - 60.0) < 1e-9);
    assert_false(v->disabled);
    const struct fu_cfg_fpipe *p = fpipe(&cfg, "research-sync");
    assert_non_null(p);
    assert_true(fabs(p->session_timeout_seconds - 3600) < 1e-9);
    assert_true(p->allow_concurrent_push);
    assert_true(fu_config_pipe_active(&cfg, &p->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

static void test_seed000_agent_config_validates_verbatim(void **state)
{
    (void)state;
    struct fu_config cfg;
    struct fu_diags d;
    int rc = load(&cfg, FU_CFG_AGENT, FU_TEST_FIXTURES "/seed000", NULL, &d);
    if (rc != 0) {
        char *t = diag_text(&d);
        fail_msg("seed 000 agent config: %s", t);
    }
    /* Only the expected warnings: the placeholder host and a path absent here. */
    assert_diag_contains(&d, "placeholder");
    assert_diag_contains(&d, "/mnt/data/source_files");
    for (size_t i = 0; i < d.n; i++)
        assert_int_equal(d.v[i].sev, FU_SEV_WARNING);
    const struct fu_cfg_source *s = cfg.agent.sources.v;
    assert_string_equal(s->it.id, "local-research-files");
    assert_string_equal(s->uri, "/mnt/data/source_files");
    const struct fu_cfg_sender *t = cfg.agent.senders.v;
    assert_string_equal(t->driver, "fusion");
    assert_string_equal(t->credential.key, "my-secure-api-key");
    const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
    assert_string_equal(p->it.id, "research-sync-task");
    assert_true(fabs(p->audit_interval_sec - 36000.0) < 1e-9);
    assert_true(fabs(p->sentinel_interval_sec - 120.0) < 1e-9);
    assert_true(isnan(p->session_timeout_seconds));
    assert_true(fu_config_pipe_active(&cfg, &p->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

static void test_seed001_snippets_validate_beside_seed000(void **state)
{
    (void)state;
    struct fu_config cfg;
    struct fu_diags d;
    int rc = load(&cfg, FU_CFG_FUSION, FU_TEST_FIXTURES "/seed001", "fan-out.yaml", &d);
    if (rc != 0 || d.n_warnings) {
        char *t = diag_text(&d);
        fail_msg("seed 001 snippets: %s", t);
    }
    const struct fu_cfg_fpipe *fan = fpipe(&cfg, "ingest-pipe");
    assert_non_null(fan);
    assert_int_equal(fan->views.n, 2);
    assert_string_equal(fan->views.v[0].id, "realtime-view");
    assert_string_equal(fan->views.v[1].id, "archive-view");
    assert_true(fan->allow_concurrent_push);
    /* `start fan-out.yaml` activates that file's pipes only. */
    assert_true(fu_config_pipe_active(&cfg, &fan->it));
    assert_false(fu_config_pipe_active(&cfg, &fpipe(&cfg, "research-sync")->it));
    const struct fu_cfg_view *m =
        (const void *)fu_cfg_find(&cfg.fusion.views, sizeof(struct fu_cfg_view), "massive-view");
    assert_non_null(m);
    assert_int_equal(m->max_tree_items, 500000);
    assert_true(fabs(m->hot_file_threshold - 60.0) < 1e-9);
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

static void test_seed001_snippet_alone_reports_dangling_references(void **state)
{
    (void)state;
    /* Without the file that defines its ids, the fan-out snippet must not pass. */
    struct home h;
    home_new(&h);
    struct fu_buf text = FU_BUF_INIT;
    assert_int_equal(
        fu_read_file(FU_TEST_FIXTURES "/seed001/fusion-config/fan-out.yaml", 1 << 20, &text), 0);
    home_put(&h, "fusion-config/default.yaml", fu_buf_str(&text));
    fu_buf_free(&text);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, "default.yaml:3:15: error: pipes.ingest-pipe.receiver: receiver "
                             "'http-receiver' is not defined");
    assert_diag_contains(&d, "view 'realtime-view' is not defined");
    assert_diag_contains(&d, "view 'archive-view' is not defined");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

/* ------------------------------------------------------------ merging */

static void test_files_merge_in_name_order_and_later_id_wins(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "fusion-config/zz-override.yaml",
             "views:\n  v1:\n    driver: fs\n    driver_params:\n      hot_file_threshold: 5\n"
             "  v2:\n    driver: fs\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_int_equal(cfg.files.n, 2);
    assert_non_null(strstr(cfg.files.v[0], "default.yaml"));
    assert_non_null(strstr(cfg.files.v[1], "zz-override.yaml"));
    assert_int_equal(cfg.fusion.views.n, 2);
    const struct fu_cfg_view *v =
        (const void *)fu_cfg_find(&cfg.fusion.views, sizeof(struct fu_cfg_view), "v1");
    assert_true(fabs(v->hot_file_threshold - 5) < 1e-9);
    /* The warning names both files. */
    assert_int_equal(d.n_warnings, 1);
    assert_diag_contains(&d, "view 'v1' is defined in ");
    assert_diag_contains(&d, "default.yaml:9");
    assert_diag_contains(&d, "zz-override.yaml:2; the later definition wins");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_globals_set_in_two_files_warn_and_later_wins(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/a.yaml", "port: 9001\n");
    home_put(&h, "fusion-config/b.yaml", "fusion:\n  port: 9002\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_int_equal(cfg.fusion.port, 9002);
    assert_diag_contains(&d, "b.yaml:2:3: warning: 'port' is also set at ");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_start_without_file_activates_only_default_yaml_pipes(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "fusion-config/extra.yaml",
             "pipes:\n  p2:\n    receiver: r1\n    views: [v1]\n"
             "receivers:\n  r2:\n    driver: http\n    port: 18890\n    api_keys:\n"
             "      - {key: k2, pipe_id: p2}\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_true(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p1")->it));
    assert_false(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p2")->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
    /* By name, with or without .yaml, and by path. */
    const char *names[] = {"extra.yaml", "extra", NULL};
    char path[128];
    snprintf(path, sizeof(path), "%s/fusion-config/extra.yaml", h.dir);
    names[2] = path;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, names[i], &d), 0);
        assert_false(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p1")->it));
        assert_true(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p2")->it));
        assert_int_equal(cfg.files.n, 2);
        fu_config_free(&cfg);
        fu_diags_free(&d);
    }
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_start_file_outside_dir_is_loaded_after_dir_files(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "outside.yaml", "pipes:\n  p9:\n    receiver: r1\n    views: [v1]\n");
    char path[128];
    snprintf(path, sizeof(path), "%s/outside.yaml", h.dir);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, path, &d), 0);
    assert_int_equal(cfg.files.n, 2);
    assert_true(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p9")->it));
    assert_false(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p1")->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, "no-such.yaml", &d), -EINVAL);
    assert_diag_contains(&d, "cannot open config file");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_disabled_dependency_makes_pipe_inactive(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "fusion-config/z.yaml", "views:\n  v1:\n    driver: fs\n    disabled: true\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_false(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p1")->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

/* ------------------------------------------------------------ bad input */

static void test_syntax_error_names_file_line_col(void **state)
{
    (void)state;
    expect_fusion_error("views:\n  v1: [1, 2\n", "default.yaml:3:1: error: YAML syntax error");
    expect_fusion_error("a: b: c\n", "default.yaml:1:");
}

static void test_wrong_type_says_what_was_expected(void **state)
{
    (void)state;
    expect_fusion_error("port: abc\n",
                        "default.yaml:1:7: error: port: expected an integer from 1 to 65535, got "
                        "'abc'");
    expect_fusion_error("port: 70000\n", "expected an integer from 1 to 65535, got '70000'");
    expect_fusion_error("port: [1]\n", "port: expected an integer from 1 to 65535, got a list");
    expect_fusion_error("views:\n  v1:\n    driver: fs\n    disabled: maybe\n",
                        "4:15: error: views.v1.disabled: expected true or false, got 'maybe'");
    expect_fusion_error("views:\n  v1:\n    driver: fs\n    driver_params:\n"
                        "      hot_file_threshold: -1\n",
                        "views.v1.driver_params.hot_file_threshold: expected a number from 0");
    expect_fusion_error("views:\n  v1:\n    driver: ftp\n",
                        "views.v1.driver: unknown value 'ftp'; expected one of 'fs', 'forest-fs'");
    expect_fusion_error("views: [a, b]\n", "views: expected a mapping of view ids");
    expect_fusion_error("views:\n  v1: fs\n", "expected the settings of view 'v1' (a mapping)");
    expect_fusion_error("logging: {level: LOUD}\n",
                        "logging.level: unknown value 'LOUD'; expected one of 'DEBUG'");
    expect_fusion_error("logging:\n  format: xml\n", "unknown value 'xml'");
    expect_fusion_error("- a\n- b\n", "expected a mapping at the top level");
    expect_fusion_error("port: .inf\n", "got '.inf'");
}

static void test_unknown_key_suggests_the_close_one(void **state)
{
    (void)state;
    expect_fusion_error("recievers: {}\n",
                        "default.yaml:1:1: error: unknown key 'recievers' (did you mean "
                        "'receivers'?)");
    expect_fusion_error("views:\n  v1:\n    driver: fs\n    driver_params:\n"
                        "      hot_file_treshold: 1\n",
                        "5:7: error: views.v1.driver_params: unknown key 'hot_file_treshold' "
                        "(did you mean 'hot_file_threshold'?)");
    expect_fusion_error("views:\n  v1:\n    driver: fs\n    max_tree_items: 5\n",
                        "unknown key 'max_tree_items' here; it belongs under 'driver_params'");
    expect_fusion_error("zebra: 1\n", "unknown key 'zebra'; valid keys here: logging, host");
}

static void test_dangling_reference_is_an_error_with_suggestion(void **state)
{
    (void)state;
    expect_fusion_error(
        "receivers:\n  http-main: {driver: http, api_keys: [{key: k, pipe_id: p}]}\n"
        "views:\n  v: {driver: fs}\n"
        "pipes:\n  p:\n    receiver: http-mian\n    views: [v]\n",
        "default.yaml:7:15: error: pipes.p.receiver: receiver 'http-mian' is not "
        "defined in any file (did you mean 'http-main'?)");
    expect_fusion_error("receivers:\n  r: {driver: http, api_keys: [{key: k, pipe_id: nope}]}\n",
                        "receivers.r.api_keys.0.pipe_id: pipe 'nope' is not defined");
    expect_agent_error("sources:\n  s: {driver: fs, uri: /tmp}\n"
                       "pipes:\n  p: {source: s, sender: fusion-main}\n",
                       "pipes.p.sender: sender 'fusion-main' is not defined");
}

static void test_missing_required_keys_are_named(void **state)
{
    (void)state;
    expect_fusion_error("pipes:\n  p:\n    views: []\n", "missing required key 'receiver'");
    expect_fusion_error("pipes:\n  p:\n    receiver: r\n    views: []\n",
                        "pipes.p.views: must list at least one id");
    expect_fusion_error("views:\n  v: {}\n", "views.v: missing required key 'driver'");
    expect_agent_error("senders:\n  s: {driver: fusion}\n", "missing required key 'uri'");
}

static void test_duplicate_ids_and_keys(void **state)
{
    (void)state;
    /* The same key twice in one file is a YAML error; across files it is a merge (above). */
    expect_fusion_error("views:\n  v1: {driver: fs}\n  v1: {driver: fs}\n",
                        "default.yaml:3:3: error: duplicate key 'v1' (first defined at line 2)");
    expect_fusion_error("port: 1\nport: 2\n", "duplicate key 'port'");
    expect_fusion_error("receivers:\n  a: {driver: http, api_keys: [{key: same, pipe_id: p}]}\n"
                        "  b: {driver: http, port: 9, api_keys: [{key: same, pipe_id: q}]}\n"
                        "views:\n  v: {driver: fs}\n"
                        "pipes:\n  p: {receiver: a, views: [v]}\n  q: {receiver: b, views: [v]}\n",
                        "this API key is already mapped to pipe 'p'");
    expect_agent_error("sources:\n  s: {driver: fs, uri: /tmp}\n"
                       "senders:\n  t: {driver: fusion, uri: 'http://h:1', credential: {key: k}}\n"
                       "pipes:\n  a: {source: s, sender: t}\n  b: {source: s, sender: t}\n",
                       "pipe 'b' uses the same source and sender as pipe 'a'");
}

static void test_invalid_ids_aliases_and_documents_are_refused(void **state)
{
    (void)state;
    expect_fusion_error("views:\n  'bad id/..': {driver: fs}\n", "invalid view id");
    expect_fusion_error("views:\n  v1: &x {driver: fs}\n  v2: *x\n", "aliases are not supported");
    expect_fusion_error("port: 1\n---\nport: 2\n", "one YAML document");
    expect_fusion_error("host: \"a\\0b\"\n", "1:8: error: a NUL character");
    expect_fusion_error("port: \"8080\\0junk\"\n", "a NUL character");
    expect_fusion_error("\"port\\0\": 1\n", "1:2: error: a NUL character");
    expect_fusion_error("port: !!str 8080\n", "1:7: error: YAML tags");
    expect_fusion_error("views: !!map {}\n", "YAML tags");
    expect_fusion_error("host: ''\n", "host: must not be empty");
}

static void test_bad_encoding_is_reported_not_truncated(void **state)
{
    (void)state;
    /* A Latin-1 byte in a comment must not hide the errors after it. */
    expect_fusion_error("port: 1234\n# r\xe9glage\nreceivers: {r1: {driver: nope}}\n",
                        "default.yaml:2:4: error: invalid UTF-8 byte 0xe9");
    expect_fusion_error("\xff\xfep\0o\0", "default.yaml:1:1: error: the file is UTF-16");
    struct home h;
    home_new(&h);
    char p[256];
    snprintf(p, sizeof(p), "%s/fusion-config/default.yaml", h.dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fwrite("port: 1234\0\nhost: 9.9.9.9\n", 1, 26, f);
    fclose(f);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, "default.yaml:1:11: error: a NUL byte");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    /* A FIFO must not hang the loader. */
    snprintf(p, sizeof(p), "%s/fusion-config/fifo.yaml", h.dir);
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, "fifo.yaml: error: cannot read: not a regular file");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_single_quoted_escapes_decode_exactly(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *host;
    } cases[] = {
        {"host: 'it''s'\n", "it's"},         {"host: 'x''''y'\n", "x''y"},
        {"host: '''a'''\n", "'a'"},          {"host: 'a''\n  b'\n", "a' b"},
        {"host: 'a''  \n\n  b'\n", "a'\nb"}, {"host: 'plain single'\n", "plain single"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct home h;
        home_new(&h);
        home_put(&h, "fusion-config/default.yaml", cases[i].yaml);
        struct fu_config cfg;
        struct fu_diags d;
        assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
        assert_string_equal(cfg.fusion.host, cases[i].host);
        fu_config_free(&cfg);
        fu_diags_free(&d);
        rm_rf(h.dir);
    }
}

static void test_integers_are_decimal_only(void **state)
{
    (void)state;
    expect_fusion_error("port: 0x50\n", "got '0x50'");
    expect_fusion_error("port: 1e3\n", "got '1e3'");
    expect_fusion_error("port: ' 80'\n", "got ' 80'");
    expect_fusion_error("port: 80.5\n", "got '80.5'");
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", "port: 8101.0\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_int_equal(cfg.fusion.port, 8101);
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_start_file_in_dir_without_yaml_suffix_is_loaded(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "fusion-config/prod.conf", "pipes:\n  p7: {receiver: r1, views: [v1]}\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, "prod.conf", &d), 0);
    assert_int_equal(cfg.files.n, 2);
    assert_true(fu_config_pipe_active(&cfg, &fpipe(&cfg, "p7")->it));
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_empty_file_is_a_warning_not_an_error(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    home_put(&h, "fusion-config/empty.yaml", "");
    home_put(&h, "fusion-config/comments.yaml", "# nothing here yet\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_int_equal(d.n_warnings, 2);
    assert_diag_contains(&d, "empty.yaml: warning: file is empty");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_missing_config_dir_is_an_error(void **state)
{
    (void)state;
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, "/nonexistent/fustor-home", NULL, &d), -EINVAL);
    assert_diag_contains(&d, "/nonexistent/fustor-home/fusion-config: error: cannot open the "
                             "config directory: No such file or directory");
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

static void test_unreadable_file_is_an_error(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    char p[256];
    /* A dangling symlink and a directory fail to read even for root. */
    snprintf(p, sizeof(p), "%s/fusion-config/broken.yaml", h.dir);
    assert_int_equal(symlink("/nonexistent/target.yaml", p), 0);
    snprintf(p, sizeof(p), "%s/fusion-config/dir.yaml", h.dir);
    assert_int_equal(mkdir(p, 0755), 0);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, "broken.yaml: error: cannot read: No such file or directory");
    assert_diag_contains(&d, "dir.yaml: error: cannot read: Is a directory");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    if (geteuid() != 0) { /* permissions bind only non-root users */
        snprintf(p, sizeof(p), "%s/fusion-config/default.yaml", h.dir);
        assert_int_equal(chmod(p, 0), 0);
        assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
        assert_diag_contains(&d, "default.yaml: error: cannot read: Permission denied");
        fu_config_free(&cfg);
        fu_diags_free(&d);
    }
    rm_rf(h.dir);
}

static void test_agent_values_are_checked(void **state)
{
    (void)state;
    expect_agent_error("sources:\n  s: {driver: fs, uri: relative/path}\n",
                       "sources.s.uri: expected an absolute path");
    expect_agent_error("senders:\n  t: {driver: fusion, uri: 'ftp://x', credential: {key: k}}\n",
                       "expected an http:// or https:// URL");
    expect_agent_error("senders:\n  t: {driver: fusion, uri: 'http://h:99999', credential: {key: "
                       "k}}\n",
                       "bad port in 'http://h:99999'");
    expect_agent_error("sources:\n  s: {driver: fs, uri: /tmp}\n"
                       "senders:\n  t: {driver: fusion, uri: 'http://h:1', credential: {key: k}}\n"
                       "pipes:\n  p:\n    source: s\n    sender: t\n    fields_mapping:\n"
                       "      - {to: size, source: ['size:bigint']}\n",
                       "the type after ':' must be one of");
    expect_agent_error("fs_scan_workers: 0\n", "expected an integer from 1 to 256, got '0'");
    expect_agent_error("senders:\n  t: {driver: fusion, uri: 'http://[::1:80', credential: {key: "
                       "k}}\n",
                       "no host in");
    /* a list of URIs (fail-over): each is checked */
    expect_agent_error("senders:\n  t: {driver: fusion, uri: ['http://a:1', 'http://b:0'], "
                       "credential: {key: k}}\n",
                       "bad port in 'http://b:0'");
    expect_agent_error("senders:\n  t: {driver: fusion, uri: [], credential: {key: k}}\n",
                       "must list at least one entry");
    expect_agent_error("senders:\n  t: {driver: fusion, uri: {a: 1}, credential: {key: k}}\n",
                       "a string or a list of strings");
}

static void test_agent_optional_values_and_field_mapping(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "agent-config/default.yaml",
             "agent_id: agent-1\nlogging: debug\n"
             "sources:\n  s: {driver: fs, uri: /tmp, driver_params: {startup_mode: message-only}}\n"
             "senders:\n  t: {driver: http, uri: 'http://127.0.0.1:18888', credential: {key: k}}\n"
             "  t6: {driver: http, uri: 'http://[::1]:18888/', credential: {key: k}}\n"
             "pipes:\n  p:\n    source: s\n    sender: t\n    session_timeout_seconds: 30\n"
             "    fields_mapping:\n"
             "      - {to: path, source: ['path:string']}\n"
             "      - {to: x.y, hardcoded_value: 1}\n"
             "      - {to: z, hardcoded_value: 'text'}\n"
             "      - {to: a, hardcoded_value: 01}\n"
             "      - {to: b, hardcoded_value: -.5}\n"
             "      - {to: c, hardcoded_value: -2.5e3}\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_AGENT, h.dir, NULL, &d), 0);
    assert_int_equal(d.n, 0);
    assert_string_equal(cfg.agent.agent_id, "agent-1");
    assert_string_equal(cfg.agent.logging.level, "DEBUG");
    const struct fu_cfg_source *s = cfg.agent.sources.v;
    assert_string_equal(s->startup_mode, "message-only");
    const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
    assert_true(fabs(p->session_timeout_seconds - 30) < 1e-9);
    assert_int_equal(p->fields_mapping.n, 6);
    const struct fu_cfg_field_map *fm = p->fields_mapping.v;
    assert_string_equal(fm[0].source.v[0], "path:string");
    assert_string_equal(fm[1].hardcoded_value, "1");
    assert_string_equal(fm[2].hardcoded_value, "\"text\"");
    /* Numbers that are not valid JSON as written stay strings, so dumps stay valid JSON. */
    assert_string_equal(fm[3].hardcoded_value, "\"01\"");
    assert_string_equal(fm[4].hardcoded_value, "\"-.5\"");
    assert_string_equal(fm[5].hardcoded_value, "-2.5e3");
    struct fu_buf js = FU_BUF_INIT;
    fu_config_to_json(&cfg, true, &js);
    assert_int_equal(fu_json_validate(js.data, js.len, NULL, NULL), 0);
    fu_buf_free(&js);
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

/* ------------------------------------------------------------ env, dumps, diffs */

static void test_env_overrides_port_and_level(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml", GOOD_FUSION);
    setenv("FUSTOR_FUSION_PORT", "9555", 1);
    setenv("FUSTOR_LOG_LEVEL", "warn", 1);
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_int_equal(cfg.fusion.port, 9555);
    assert_string_equal(cfg.fusion.logging.level, "WARNING");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    setenv("FUSTOR_FUSION_PORT", "0", 1);
    setenv("FUSTOR_LOG_LEVEL", "chatty", 1);
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), -EINVAL);
    assert_diag_contains(&d, "FUSTOR_FUSION_PORT: error: expected a TCP port from 1 to 65535");
    assert_diag_contains(&d,
                         "FUSTOR_LOG_LEVEL: error: expected DEBUG, INFO, WARNING (WARN) or ERROR");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    unsetenv("FUSTOR_FUSION_PORT");
    unsetenv("FUSTOR_LOG_LEVEL");
    rm_rf(h.dir);
}

static void test_logging_accepts_a_level_string_or_a_mapping(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml",
             "logging: {level: debug, format: json, file: logs/x.log}\n");
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    assert_string_equal(cfg.fusion.logging.level, "DEBUG");
    assert_string_equal(cfg.fusion.logging.format, "json");
    assert_string_equal(cfg.fusion.logging.file, "logs/x.log");
    fu_config_free(&cfg);
    fu_diags_free(&d);
    rm_rf(h.dir);
}

static void test_json_dump_redacts_secrets(void **state)
{
    (void)state;
    struct fu_config cfg;
    struct fu_diags d;
    assert_int_equal(load(&cfg, FU_CFG_FUSION, FU_TEST_FIXTURES "/seed000", NULL, &d), 0);
    struct fu_buf b = FU_BUF_INIT;
    fu_config_to_json(&cfg, true, &b);
    assert_null(strstr(fu_buf_str(&b), "my-secure-api-key"));
    assert_non_null(strstr(fu_buf_str(&b), "\"key\":\"***\""));
    assert_non_null(strstr(fu_buf_str(&b), "\"hot_file_threshold\":60"));
    fu_buf_reset(&b);
    fu_config_to_json(&cfg, false, &b);
    assert_non_null(strstr(fu_buf_str(&b), "my-secure-api-key"));
    fu_buf_free(&b);
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

static void test_diff_reports_added_removed_and_changed_pipes(void **state)
{
    (void)state;
    struct home h;
    home_new(&h);
    home_put(&h, "fusion-config/default.yaml",
             "receivers:\n  r: {driver: http, api_keys: [{key: a, pipe_id: p1}, {key: b, pipe_id: "
             "p2}]}\n"
             "views:\n  v: {driver: fs}\n  w: {driver: fs}\n"
             "pipes:\n  p1: {receiver: r, views: [v]}\n  p2: {receiver: r, views: [w]}\n");
    struct fu_config a, b;
    struct fu_diags d;
    assert_int_equal(load(&a, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    fu_diags_free(&d);
    home_put(&h, "fusion-config/default.yaml",
             "receivers:\n  r: {driver: http, api_keys: [{key: a, pipe_id: p1}, {key: b, pipe_id: "
             "p2}, {key: c, pipe_id: p3}]}\n"
             "views:\n  v: {driver: fs}\n  w: {driver: fs, driver_params: {hot_file_threshold: "
             "9}}\n"
             "pipes:\n  p1: {receiver: r, views: [v]}\n  p3: {receiver: r, views: [v]}\n"
             "  p2: {receiver: r, views: [w]}\nlogging: DEBUG\n");
    assert_int_equal(load(&b, FU_CFG_FUSION, h.dir, NULL, &d), 0);
    fu_diags_free(&d);
    struct fu_config_diff diff;
    fu_config_diff(&a, &b, &diff);
    assert_int_equal(diff.added.n, 1);
    assert_string_equal(diff.added.v[0], "p3");
    assert_int_equal(diff.removed.n, 0);
    assert_int_equal(diff.changed.n, 1); /* p2: its view changed */
    assert_string_equal(diff.changed.v[0], "p2");
    assert_true(diff.logging_changed);
    fu_config_diff_free(&diff);
    fu_config_diff(&b, &a, &diff);
    assert_int_equal(diff.removed.n, 1);
    assert_string_equal(diff.removed.v[0], "p3");
    fu_config_diff_free(&diff);
    fu_config_free(&a);
    fu_config_free(&b);
    rm_rf(h.dir);
}

/* Leaves the environment clean even when an env test fails half-way. */
static int unset_env(void **state)
{
    (void)state;
    unsetenv("FUSTOR_FUSION_PORT");
    unsetenv("FUSTOR_LOG_LEVEL");
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed000_fusion_config_validates_verbatim),
        cmocka_unit_test(test_seed000_agent_config_validates_verbatim),
        cmocka_unit_test(test_seed001_snippets_validate_beside_seed000),
        cmocka_unit_test(test_seed001_snippet_alone_reports_dangling_references),
        cmocka_unit_test(test_files_merge_in_name_order_and_later_id_wins),
        cmocka_unit_test(test_globals_set_in_two_files_warn_and_later_wins),
        cmocka_unit_test(test_start_without_file_activates_only_default_yaml_pipes),
        cmocka_unit_test(test_start_file_outside_dir_is_loaded_after_dir_files),
        cmocka_unit_test(test_disabled_dependency_makes_pipe_inactive),
        cmocka_unit_test(test_syntax_error_names_file_line_col),
        cmocka_unit_test(test_wrong_type_says_what_was_expected),
        cmocka_unit_test(test_unknown_key_suggests_the_close_one),
        cmocka_unit_test(test_dangling_reference_is_an_error_with_suggestion),
        cmocka_unit_test(test_missing_required_keys_are_named),
        cmocka_unit_test(test_duplicate_ids_and_keys),
        cmocka_unit_test(test_invalid_ids_aliases_and_documents_are_refused),
        cmocka_unit_test(test_bad_encoding_is_reported_not_truncated),
        cmocka_unit_test(test_single_quoted_escapes_decode_exactly),
        cmocka_unit_test(test_integers_are_decimal_only),
        cmocka_unit_test(test_start_file_in_dir_without_yaml_suffix_is_loaded),
        cmocka_unit_test(test_empty_file_is_a_warning_not_an_error),
        cmocka_unit_test(test_missing_config_dir_is_an_error),
        cmocka_unit_test(test_unreadable_file_is_an_error),
        cmocka_unit_test(test_agent_values_are_checked),
        cmocka_unit_test(test_agent_optional_values_and_field_mapping),
        cmocka_unit_test_teardown(test_env_overrides_port_and_level, unset_env),
        cmocka_unit_test(test_logging_accepts_a_level_string_or_a_mapping),
        cmocka_unit_test(test_json_dump_redacts_secrets),
        cmocka_unit_test(test_diff_reports_added_removed_and_changed_pipes),
    };
    unsetenv("FUSTOR_FUSION_PORT");
    unsetenv("FUSTOR_LOG_LEVEL");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
