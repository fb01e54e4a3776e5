/* fustor-agent: the agent's entry point. The CLI and process lifecycle are shared with
 * Fusion (src/common/cli.c); the agent's runtime (agent.c) runs inside it. */
#include "agent/agent.h"
#include "common/cli.h"

static int start(void **rt, const struct fu_config *cfg, char *err, size_t errlen)
{
    return fu_agent_start((struct fu_agent **)rt, cfg, err, errlen);
}

static void stop(void *rt)
{
    fu_agent_stop(rt);
}

static void status(void *rt, struct fu_jw *w)
{
    fu_agent_status(rt, w);
}

static int reload(void *rt, const struct fu_config *next, const struct fu_config_diff *diff)
{
    return fu_agent_reload(rt, next, diff);
}

int main(int argc, char **argv)
{
    static const struct fu_app app = {"fustor-agent", FU_CFG_AGENT, start, stop, status, reload};
    return fu_cli_main(&app, argc, argv);
}
