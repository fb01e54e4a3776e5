/* The pipe option fields_mapping, as a specification: Fustor v1's EventMapper semantics on
 * the wire (a projection; "field:type" conversions with Python's rules; dotted targets nest;
 * absent fields are skipped; hardcoded values keep their YAML type), and the config checks
 * that refuse what v1 only warned about per row. Mappings are written as YAML, as users do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/fieldmap.h"
#include "common/config.h"
#include "common/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static const char *HEAD = "sources:\n"
                          "  s: {driver: fs, uri: /tmp}\n"
                          "senders:\n"
                          "  t: {driver: fusion, uri: 'http://h:1', credential: {key: k}}\n"
                          "pipes:\n"
                          "  p:\n"
                          "    source: s\n"
                          "    sender: t\n"; /* 8 lines: a mapping below starts on line 9 */

/* Loads HEAD + `tail` as agent-config/default.yaml from a temp file; returns the load's rc,
 * with the diagnostics as "file:line:col: sev: msg" lines in *diags (caller frees) and the
 * file name (without directory) replaced by "F". */
static int load_agent(const char *tail, struct fu_config *cfg, char **diags)
{
    char path[] = "/tmp/fu-test-fieldmap-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(HEAD, f);
    fputs(tail, f);
    fclose(f);
    struct fu_diags d;
    fu_diags_init(&d);
    const char *files[] = {path};
    int rc = fu_config_load_files(cfg, FU_CFG_AGENT, files, 1, path, &d);
    struct fu_buf b = FU_BUF_INIT;
    for (size_t i = 0; i < d.n; i++) {
        char *s = fu_diag_format(&d.v[i]);
        const char *at = strstr(s, path);
        if (at)
            fu_buf_printf(&b, "%.*sF%s\n", (int)(at - s), s, at + strlen(path));
        else
            fu_buf_printf(&b, "%s\n", s);
        free(s);
    }
    fu_diags_free(&d);
    unlink(path);
    *diags = fu_buf_detach(&b);
    return rc;
}

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("expected [%s] in:\n%s", (needle), (hay));                                    \
    } while (0)

/* The compiled mapping of pipe p with `entries` (YAML list items, 6 spaces deep). */
static struct fu_fieldmap *compile(const char *entries)
{
    char tail[4096];
    snprintf(tail, sizeof(tail), "    fields_mapping:\n%s", entries);
    struct fu_config cfg;
    char *diags;
    int rc = load_agent(tail, &cfg, &diags);
    if (rc)
        fail_msg("config refused:\n%s", diags);
    free(diags);
    const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
    struct fu_fieldmap *m = NULL;
    char err[200];
    assert_int_equal(fu_fieldmap_compile(&p->fields_mapping, &m, err, sizeof(err)), 0);
    assert_non_null(m);
    fu_config_free(&cfg);
    return m;
}

/* A row rendered as the object the agent sends (caller frees). */
static char *render(const struct fu_fieldmap *m, const struct fu_fm_row *r)
{
    struct fu_buf b = FU_BUF_INIT;
    struct fu_jw w;
    fu_jw_init(&w, &b);
    fu_jw_obj_begin(&w);
    fu_fieldmap_write(m, &w, r);
    fu_jw_obj_end(&w);
    assert_false(b.oom);
    assert_int_equal(fu_json_validate(b.data, b.len, NULL, NULL), 0);
    return fu_buf_detach(&b);
}

#define assert_row(m, r, want)                                                                     \
    do {                                                                                           \
        char *got_ = render((m), (r));                                                             \
        assert_string_equal(got_, (want));                                                         \
        free(got_);                                                                                \
    } while (0)

/* A snapshot row of a file: /data/file.txt, 10240 bytes. */
static struct fu_fm_row file_row(void)
{
    struct fu_fm_row r;
    const char *p = "/data/file.txt";
    fu_fm_row_init(&r, p, strlen(p), true, 10240, 1706000123.5, 1706000100.0, false);
    return r;
}

/* A row whose path (and so file name) is `s`, to feed string conversions. */
static struct fu_fm_row named(const char *s)
{
    struct fu_fm_row r;
    fu_fm_row_init(&r, s, strlen(s), true, 0, 0, 0, false);
    return r;
}

/* ------------------------------------------------------------ projection */

static void test_no_mapping_compiles_to_nothing_so_rows_pass_unchanged(void **state)
{
    (void)state;
    struct fu_cfg_vec none = {0};
    struct fu_fieldmap *m = (struct fu_fieldmap *)1;
    char err[100];
    assert_int_equal(fu_fieldmap_compile(&none, &m, err, sizeof(err)), 0);
    assert_null(m); /* the agent then writes its rows as it always did */
    struct fu_config cfg;
    char *diags;
    assert_int_equal(load_agent("    fields_mapping: []\n", &cfg, &diags), 0);
    const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
    m = (struct fu_fieldmap *)1;
    assert_int_equal(fu_fieldmap_compile(&p->fields_mapping, &m, err, sizeof(err)), 0);
    assert_null(m);
    fu_config_free(&cfg);
    free(diags);
    fu_fieldmap_free(NULL);
}

static void test_only_mapped_fields_are_sent_under_their_new_names(void **state)
{
    (void)state;
    struct fu_fieldmap *m =
        compile("      - {to: path, source: ['path:string']}\n"
                "      - {to: remapped_size, source: ['size:integer']}\n"
                "      - {to: modified_time, source: ['modified_time:number']}\n"
                "      - {to: name, source: [file_name]}\n");
    struct fu_fm_row r = file_row();
    assert_row(m, &r,
               "{\"path\":\"/data/file.txt\",\"remapped_size\":10240,"
               "\"modified_time\":1706000123.5,\"name\":\"file.txt\"}");
    assert_string_equal(fu_fieldmap_fields_json(m),
                        "[\"path\",\"remapped_size\",\"modified_time\",\"name\"]");
    fu_fieldmap_free(m);
}

static void test_only_the_first_source_is_read(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: s, source: ['size', 'path:string']}\n");
    struct fu_fm_row r = file_row();
    assert_row(m, &r, "{\"s\":10240}");
    fu_fieldmap_free(m);
}

/* ------------------------------------------------------------ conversions */

static void test_each_field_type_converts_as_python_does(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: size_str, source: ['size:str']}\n"
                                    "      - {to: size_float, source: ['size:float']}\n"
                                    "      - {to: size_bool, source: ['size:bool']}\n"
                                    "      - {to: mtime_str, source: ['modified_time:string']}\n"
                                    "      - {to: mtime_int, source: ['modified_time:int']}\n"
                                    "      - {to: mtime_bool, source: ['modified_time:boolean']}\n"
                                    "      - {to: dir_str, source: ['is_directory:string']}\n"
                                    "      - {to: dir_int, source: ['is_directory:integer']}\n"
                                    "      - {to: dir_float, source: ['is_directory:number']}\n"
                                    "      - {to: dir_bool, source: ['is_directory:bool']}\n"
                                    "      - {to: ctime, source: ['created_time']}\n");
    struct fu_fm_row r = file_row();
    assert_row(m, &r,
               "{\"size_str\":\"10240\",\"size_float\":10240.0,\"size_bool\":true,"
               "\"mtime_str\":\"1706000123.5\",\"mtime_int\":1706000123,\"mtime_bool\":true,"
               "\"dir_str\":\"False\",\"dir_int\":0,\"dir_float\":0.0,\"dir_bool\":false,"
               "\"ctime\":1706000100.0}");
    fu_fieldmap_free(m);
}

static void test_strings_convert_with_pythons_int_and_float_rules(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: i, source: ['file_name:int']}\n"
                                    "      - {to: f, source: ['file_name:float']}\n");
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"/42", "{\"i\":42,\"f\":42.0}"},
        {"/ -007 ", "{\"i\":-7,\"f\":-7.0}"},
        {"/-0", "{\"i\":0,\"f\":-0.0}"},
        {"/1_000", "{\"i\":1000,\"f\":1000.0}"},
        {"/2.5", "{\"i\":\"2.5\",\"f\":2.5}"},
        {"/.5", "{\"i\":\".5\",\"f\":0.5}"},
        {"/1.", "{\"i\":\"1.\",\"f\":1.0}"},
        {"/-1.5e3", "{\"i\":\"-1.5e3\",\"f\":-1500.0}"},
        {"/123456789012345678901234567890",
         "{\"i\":123456789012345678901234567890,\"f\":1.2345678901234568e+29}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fu_fm_row r = named(cases[i].name);
        assert_row(m, &r, cases[i].want);
    }
    fu_fieldmap_free(m);
}

static void test_a_failed_conversion_keeps_the_original_value(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: i, source: ['file_name:integer']}\n"
                                    "      - {to: f, source: ['file_name:number']}\n");
    /* not numbers; misplaced underscores; inf, nan and overflow have no JSON form */
    static const char *const bad[] = {"abc", "",  "1__0", "_1",  "1_",  "1e",
                                      ".",   "+", "0x10", "inf", "nan", "1e400"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[32], want[96];
        snprintf(path, sizeof(path), "/%s", bad[i]);
        snprintf(want, sizeof(want), "{\"i\":\"%s\",\"f\":\"%s\"}", bad[i], bad[i]);
        struct fu_fm_row r = named(path);
        assert_row(m, &r, want);
    }
    fu_fieldmap_free(m);
}

static void test_boolean_is_true_for_v1s_words_and_nonzero_numbers(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: b, source: ['file_name:boolean']}\n"
                                    "      - {to: n, source: ['size:bool']}\n"
                                    "      - {to: t, source: ['modified_time:bool']}\n");
    static const char *const yes[] = {"true", "TRUE", "True", "1", "yes", "Yes", "on", "ON"};
    static const char *const no[] = {"false", "0", "no", "off", "y", "", " true", "2", "truth"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        char path[32];
        snprintf(path, sizeof(path), "/%s", yes[i]);
        struct fu_fm_row r = named(path);
        assert_row(m, &r, "{\"b\":true,\"n\":false,\"t\":false}");
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        char path[32];
        snprintf(path, sizeof(path), "/%s", no[i]);
        struct fu_fm_row r = named(path);
        r.size = 3;
        r.modified_time = -0.5;
        assert_row(m, &r, "{\"b\":false,\"n\":true,\"t\":true}");
    }
    fu_fieldmap_free(m);
}

static void test_str_of_a_float_is_pythons_repr(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: s, source: ['modified_time:str']}\n");
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {100.0, "100.0"},
        {0.1, "0.1"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {1e15, "1000000000000000.0"},
        {1e16, "1e+16"},
        {1.5e300, "1.5e+300"},
        {1706000123.123456, "1706000123.123456"},
        {1.0 / 3, "0.3333333333333333"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fu_fm_row r = file_row();
        r.modified_time = cases[i].v;
        char want[64];
        snprintf(want, sizeof(want), "{\"s\":\"%s\"}", cases[i].want);
        assert_row(m, &r, want);
    }
    fu_fieldmap_free(m);
}

static void test_integer_of_a_float_truncates_toward_zero(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: i, source: ['modified_time:int']}\n");
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {1.9, "1"}, {-1.9, "-1"}, {-0.5, "0"}, {0.0, "0"}, {1e20, "100000000000000000000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fu_fm_row r = file_row();
        r.modified_time = cases[i].v;
        char want[64];
        snprintf(want, sizeof(want), "{\"i\":%s}", cases[i].want);
        assert_row(m, &r, want);
    }
    fu_fieldmap_free(m);
}

/* ------------------------------------------------------------ nesting and values */

static void test_dotted_targets_nest_and_share_their_objects(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: files.path, source: ['path']}\n"
                                    "      - {to: meta.a.size, source: ['size']}\n"
                                    "      - {to: files.size, source: ['size']}\n"
                                    "      - {to: meta.a.dir, source: ['is_directory']}\n"
                                    "      - {to: top, source: ['file_name']}\n");
    struct fu_fm_row r = file_row();
    assert_row(m, &r,
               "{\"files\":{\"path\":\"/data/file.txt\",\"size\":10240},"
               "\"meta\":{\"a\":{\"size\":10240,\"dir\":false}},\"top\":\"file.txt\"}");
    assert_string_equal(fu_fieldmap_fields_json(m), "[\"files\",\"meta\",\"top\"]");
    fu_fieldmap_free(m);
}

static void test_an_object_appears_only_when_a_value_under_it_is_written(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: p, source: ['path']}\n"
                                    "      - {to: stat.size, source: ['size']}\n"
                                    "      - {to: stat.t.m, source: ['modified_time']}\n"
                                    "      - {to: audit.parent, source: ['parent_path']}\n");
    struct fu_fm_row r;
    fu_fm_row_init(&r, "/gone", 5, false, 0, 0, 0, false); /* a delete: only path, name */
    assert_row(m, &r, "{\"p\":\"/gone\"}");
    r = file_row(); /* not an audit row: no parent_path, so no "audit" */
    assert_row(m, &r,
               "{\"p\":\"/data/file.txt\",\"stat\":{\"size\":10240,\"t\":{\"m\":1706000123.5}}}");
    fu_fieldmap_free(m);
}

static void test_hardcoded_values_keep_their_yaml_type(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: int, hardcoded_value: 1}\n"
                                    "      - {to: float, hardcoded_value: 2.5}\n"
                                    "      - {to: exp, hardcoded_value: -2.5e3}\n"
                                    "      - {to: yes, hardcoded_value: true}\n"
                                    "      - {to: no, hardcoded_value: false}\n"
                                    "      - {to: word, hardcoded_value: text}\n"
                                    "      - {to: quoted, hardcoded_value: '7'}\n"
                                    "      - {to: qbool, hardcoded_value: 'true'}\n"
                                    "      - {to: x.y, hardcoded_value: 1}\n");
    struct fu_fm_row r;
    fu_fm_row_init(&r, "/gone", 5, false, 0, 0, 0, false);
    assert_row(m, &r,
               "{\"int\":1,\"float\":2.5,\"exp\":-2500.0,\"yes\":true,\"no\":false,"
               "\"word\":\"text\",\"quoted\":\"7\",\"qbool\":\"true\",\"x\":{\"y\":1}}");
    fu_fieldmap_free(m);
}

static void test_an_absent_source_field_is_skipped(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: path, source: ['path']}\n"
                                    "      - {to: size, source: ['size:integer']}\n"
                                    "      - {to: pm, source: ['parent_mtime:str']}\n"
                                    "      - {to: skipped, source: ['audit_skipped']}\n"
                                    "      - {to: atomic, source: ['is_atomic_write']}\n"
                                    "      - {to: nothing, source: ['no_such_field:int']}\n");
    struct fu_fm_row r;
    fu_fm_row_init(&r, "/gone", 5, false, 0, 0, 0, false); /* delete: no size */
    assert_row(m, &r, "{\"path\":\"/gone\"}");
    r = file_row(); /* an audit row of a directory the cache says is unchanged */
    r.present |= FU_FM_BIT(FU_FM_PARENT_PATH) | FU_FM_BIT(FU_FM_PARENT_MTIME) |
                 FU_FM_BIT(FU_FM_AUDIT_SKIPPED);
    r.parent_path = "/data";
    r.parent_path_len = 5;
    r.parent_mtime = 1706000000.0;
    r.audit_skipped = true;
    assert_row(m, &r,
               "{\"path\":\"/data/file.txt\",\"size\":10240,\"pm\":\"1706000000.0\","
               "\"skipped\":true}");
    r = file_row(); /* a realtime upsert */
    r.present |= FU_FM_BIT(FU_FM_IS_ATOMIC_WRITE);
    r.is_atomic_write = false;
    assert_row(m, &r, "{\"path\":\"/data/file.txt\",\"size\":10240,\"atomic\":false}");
    fu_fieldmap_free(m);
}

static void test_keys_and_values_are_escaped(void **state)
{
    (void)state;
    struct fu_fieldmap *m = compile("      - {to: 'a \"q\"', source: ['path']}\n"
                                    "      - {to: 'ü.k', hardcoded_value: 'x\\y'}\n");
    struct fu_fm_row r = named("/a\"b\n");
    assert_row(m, &r, "{\"a \\\"q\\\"\":\"/a\\\"b\\n\",\"ü\":{\"k\":\"x\\\\y\"}}");
    fu_fieldmap_free(m);
}

/* ------------------------------------------------------------ config checks */

static void expect_refused(const char *entries, const char *needle)
{
    char tail[4096];
    snprintf(tail, sizeof(tail), "    fields_mapping:\n%s", entries);
    struct fu_config cfg;
    char *diags;
    if (load_agent(tail, &cfg, &diags) != -EINVAL)
        fail_msg("expected the config to be refused for:\n%s\ngot:\n%s", entries, diags);
    assert_contains(diags, needle);
    free(diags);
    fu_config_free(&cfg);
}

static void test_a_target_that_is_both_a_value_and_an_object_is_refused(void **state)
{
    (void)state;
    expect_refused("      - {to: x, source: ['size']}\n"
                   "      - {to: x.y, hardcoded_value: 1}\n",
                   "F:11:9: error: pipes.p.fields_mapping.1: 'to: x.y' conflicts with 'to: x' of "
                   "mapping 0 (line 10): 'x' cannot be both a value and an object");
    /* the other order, deeper, and in block style */
    expect_refused("      - to: a.b.c\n"
                   "        source: [size]\n"
                   "      - to: a.b\n"
                   "        source: [path]\n",
                   "F:12:9: error: pipes.p.fields_mapping.1: 'to: a.b' conflicts with 'to: a.b.c' "
                   "of mapping 0 (line 10): 'a.b' cannot be both a value and an object");
    /* a shared prefix of a key is no conflict */
    struct fu_fieldmap *m = compile("      - {to: x, source: ['size']}\n"
                                    "      - {to: xy.z, source: ['size']}\n");
    fu_fieldmap_free(m);
}

static void test_two_mappings_to_one_target_are_refused(void **state)
{
    (void)state;
    expect_refused("      - {to: path, source: ['path']}\n"
                   "      - {to: size, source: ['size']}\n"
                   "      - {to: path, source: ['file_name']}\n",
                   "F:12:9: error: pipes.p.fields_mapping.2: mapping 0 (line 10) already writes "
                   "'path'; each target can be written by one mapping only");
}

static void test_malformed_mappings_are_refused(void **state)
{
    (void)state;
    expect_refused("      - {to: '', source: ['path']}\n",
                   "F:10:15: error: pipes.p.fields_mapping.0.to: must not be empty");
    expect_refused("      - {source: ['path']}\n",
                   "pipes.p.fields_mapping.0: missing required key 'to'");
    expect_refused("      - {to: a, source: []}\n",
                   "pipes.p.fields_mapping.0.source: must list at least one entry");
    expect_refused("      - {to: a}\n", "F:10:9: error: pipes.p.fields_mapping.0: mapping to 'a' "
                                        "needs 'source' or 'hardcoded_value'");
    expect_refused("      - {to: a, hardcoded_value: null}\n",
                   "needs 'source' or 'hardcoded_value'");
    expect_refused("      - {to: a..b, source: ['path']}\n",
                   "F:10:9: error: pipes.p.fields_mapping.0: 'to: a..b' has an empty key");
    expect_refused("      - {to: .a, source: ['path']}\n", "'to: .a' has an empty key");
    expect_refused("      - {to: a., source: ['path']}\n", "'to: a.' has an empty key");
    expect_refused("      - {to: a, source: ['size:bigint']}\n",
                   "F:10:9: error: pipes.p.fields_mapping.0: 'size:bigint': the type after ':' "
                   "must be one of");
    expect_refused("      - {to: a, source: ['size:b:int']}\n",
                   "the type after ':' must be one of");
    char deep[400] = "      - {to: k";
    for (int i = 0; i < 32; i++)
        strcat(deep, ".k");
    strcat(deep, ", source: ['path']}\n");
    expect_refused(deep, "nests 33 keys deep; at most 32");
}

static void test_mappings_that_never_write_or_ignore_a_source_are_warned_about(void **state)
{
    (void)state;
    struct fu_config cfg;
    char *diags;
    assert_int_equal(load_agent("    fields_mapping:\n"
                                "      - {to: a, source: ['files.size:int']}\n"
                                "      - {to: b, source: ['size'], hardcoded_value: 1}\n",
                                &cfg, &diags),
                     0);
    assert_contains(diags, "F:10:9: warning: pipes.p.fields_mapping.0: no row has the field "
                           "'files.size', so 'a' is never sent");
    assert_contains(diags, "F:11:9: warning: pipes.p.fields_mapping.1: mapping to 'b' has both "
                           "'source' and 'hardcoded_value'; the hardcoded value is sent");
    const struct fu_cfg_apipe *p = cfg.agent.pipes.v;
    struct fu_fieldmap *m;
    char err[200];
    assert_int_equal(fu_fieldmap_compile(&p->fields_mapping, &m, err, sizeof(err)), 0);
    struct fu_fm_row r = file_row();
    assert_row(m, &r, "{\"b\":1}");
    fu_fieldmap_free(m);
    fu_config_free(&cfg);
    free(diags);
}

static void test_every_row_field_is_known_to_the_config_check(void **state)
{
    (void)state;
    char tail[2048] = "    fields_mapping:\n";
    for (int f = 0; f < FU_FM_NFIELDS; f++) {
        size_t n = strlen(tail);
        snprintf(tail + n, sizeof(tail) - n, "      - {to: f%d, source: ['%s:str']}\n", f,
                 fu_fm_field_names[f]);
    }
    struct fu_config cfg;
    char *diags;
    assert_int_equal(load_agent(tail, &cfg, &diags), 0);
    if (strstr(diags, "warning"))
        fail_msg("unexpected warnings:\n%s", diags);
    free(diags);
    fu_config_free(&cfg);
}

static void test_compile_refuses_what_validation_refuses(void **state)
{
    (void)state;
    struct fu_cfg_field_map v[2] = {{.to = "x"}, {.to = "x.y"}};
    fu_strv_push(&v[0].source, "size");
    fu_strv_push(&v[1].source, "path");
    struct fu_cfg_vec vec = {v, 2};
    struct fu_fieldmap *m = (struct fu_fieldmap *)1;
    char err[200];
    assert_int_equal(fu_fieldmap_compile(&vec, &m, err, sizeof(err)), -EINVAL);
    assert_null(m);
    assert_string_equal(err, "'to: x.y': 'x' is also a value");
    v[1].to = "x";
    assert_int_equal(fu_fieldmap_compile(&vec, &m, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "'to: x' is mapped twice");
    v[0].to = "x.y";
    assert_int_equal(fu_fieldmap_compile(&vec, &m, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "'to: x' is also an object");
    fu_strv_free(&v[0].source);
    fu_strv_free(&v[1].source);
}

static void test_a_changed_mapping_is_a_changed_pipe_for_reload(void **state)
{
    (void)state;
    struct fu_config a, b, c;
    char *d1, *d2, *d3;
    assert_int_equal(load_agent("    fields_mapping:\n"
                                "      - {to: path, source: ['path']}\n",
                                &a, &d1),
                     0);
    assert_int_equal(load_agent("    fields_mapping:\n"
                                "      - {to: path, source: ['path:string']}\n",
                                &b, &d2),
                     0);
    assert_int_equal(load_agent("    fields_mapping:\n"
                                "      - {to: path, source: ['path']}\n",
                                &c, &d3),
                     0);
    struct fu_config_diff diff;
    fu_config_diff(&a, &b, &diff);
    assert_int_equal(diff.changed.n, 1);
    assert_string_equal(diff.changed.v[0], "p");
    fu_config_diff_free(&diff);
    fu_config_diff(&a, &c, &diff); /* the same mapping, from another file: unchanged */
    assert_int_equal(diff.changed.n + diff.added.n + diff.removed.n, 0);
    fu_config_diff_free(&diff);
    fu_config_free(&a);
    fu_config_free(&b);
    fu_config_free(&c);
    free(d1);
    free(d2);
    free(d3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_mapping_compiles_to_nothing_so_rows_pass_unchanged),
        cmocka_unit_test(test_only_mapped_fields_are_sent_under_their_new_names),
        cmocka_unit_test(test_only_the_first_source_is_read),
        cmocka_unit_test(test_each_field_type_converts_as_python_does),
        cmocka_unit_test(test_strings_convert_with_pythons_int_and_float_rules),
        cmocka_unit_test(test_a_failed_conversion_keeps_the_original_value),
        cmocka_unit_test(test_boolean_is_true_for_v1s_words_and_nonzero_numbers),
        cmocka_unit_test(test_str_of_a_float_is_pythons_repr),
        cmocka_unit_test(test_integer_of_a_float_truncates_toward_zero),
        cmocka_unit_test(test_dotted_targets_nest_and_share_their_objects),
        cmocka_unit_test(test_an_object_appears_only_when_a_value_under_it_is_written),
        cmocka_unit_test(test_hardcoded_values_keep_their_yaml_type),
        cmocka_unit_test(test_an_absent_source_field_is_skipped),
        cmocka_unit_test(test_keys_and_values_are_escaped),
        cmocka_unit_test(test_a_target_that_is_both_a_value_and_an_object_is_refused),
        cmocka_unit_test(test_two_mappings_to_one_target_are_refused),
        cmocka_unit_test(test_malformed_mappings_are_refused),
        cmocka_unit_test(test_mappings_that_never_write_or_ignore_a_source_are_warned_about),
        cmocka_unit_test(test_every_row_field_is_known_to_the_config_check),
        cmocka_unit_test(test_compile_refuses_what_validation_refuses),
        cmocka_unit_test(test_a_changed_mapping_is_a_changed_pipe_for_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
