/* fustor-fusion: the Fusion server's entry point. The CLI and process lifecycle are shared
 * with the agent (src/common/cli.c); the Fusion runtime (fusion.c) runs inside it. */
#include "common/cli.h"
#include "fusion/backup.h"
#include "fusion/fusion.h"

static int start(void **rt, const struct fu_config *cfg, char *err, size_t errlen)
{
    return fu_fusion_start((struct fu_fusion **)rt, cfg, err, errlen);
}

static void stop(void *rt)
{
    fu_fusion_stop(rt);
}

static int reload(void *rt, const struct fu_config *next, const struct fu_config_diff *diff)
{
    (void)diff; /* the runtime compares the new config with what it runs */
    return fu_fusion_reload(rt, next);
}

int main(int argc, char **argv)
{
    static const struct fu_app app = {.prog = "fustor-fusion",
                                      .kind = FU_CFG_FUSION,
                                      .start = start,
                                      .stop = stop,
                                      .reload = reload};
    return fu_cli_main_with_backup(&app, &fu_fusion_backup_hooks, argc, argv);
}
