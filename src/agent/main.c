/* fustor-agent: the agent's entry point. The CLI and process lifecycle are shared with
 * Fusion (src/common/cli.c); the agent's runtime attaches to the service loop. */
#include "common/cli.h"

int main(int argc, char **argv)
{
    static const struct fu_app app = {"fustor-agent", FU_CFG_AGENT, NULL, NULL};
    return fu_cli_main(&app, argc, argv);
}
