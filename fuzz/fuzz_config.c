/* libFuzzer harness for config loading: any file content, as a Fusion and as an agent config,
 * must load without misbehaving, and whatever loads must dump to valid JSON. */
#include "common/config.h"
#include "common/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void load_as(enum fu_cfg_kind kind, const char *path)
{
    struct fu_config cfg;
    struct fu_diags d;
    fu_diags_init(&d);
    const char *files[] = {path};
    fu_config_load_files(&cfg, kind, files, 1, path, &d);
    struct fu_buf out = FU_BUF_INIT;
    fu_config_to_json(&cfg, true, &out);
    if (fu_json_validate(fu_buf_str(&out), out.len, NULL, NULL) != 0)
        abort();
    for (size_t i = 0; i < fu_config_pipes(&cfg)->n; i++) {
        fu_buf_reset(&out);
        fu_config_pipe_fingerprint(&cfg, fu_config_pipe_at(&cfg, i), &out);
        if (fu_json_validate(fu_buf_str(&out), out.len, NULL, NULL) != 0)
            abort();
    }
    for (size_t i = 0; i < d.n; i++)
        free(fu_diag_format(&d.v[i]));
    fu_buf_free(&out);
    fu_config_free(&cfg);
    fu_diags_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/fustor-fuzz-config-%ld.yaml", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    load_as(FU_CFG_FUSION, path);
    load_as(FU_CFG_AGENT, path);
    unlink(path);
    return 0;
}
