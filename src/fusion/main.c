/* fustor-fusion: the Fusion server's entry point. The CLI and process lifecycle are shared
 * with the agent (src/common/cli.c); Fusion's runtime attaches to the service loop. */
#include "common/cli.h"

int main(int argc, char **argv)
{
    static const struct fu_app app = {"fustor-fusion", FU_CFG_FUSION};
    return fu_cli_main(&app, argc, argv);
}
