/* fustor-fusion: the Fusion server's entry point. The CLI and process lifecycle are shared
 * with the agent (src/common/cli.c); the Fusion runtime (fusion.c) runs inside it. */
#include "common/cli.h"
#include "fusion/fusion.h"

static int start(void **rt, const struct fu_config *cfg, char *err, size_t errlen)
{
    return fu_fusion_start((struct fu_fusion **)rt, cfg, err, errlen);
}

static void stop(void *rt)
{
    fu_fusion_stop(rt);
}

int main(int argc, char **argv)
{
    static const struct fu_app app = {"fustor-fusion", FU_CFG_FUSION, start, stop, NULL, NULL};
    return fu_cli_main(&app, argc, argv);
}
