/* The command line both binaries share (see cli.c for commands and exit codes). */
#ifndef FU_CLI_H
#define FU_CLI_H

#include "common/service.h"

int fu_cli_main(const struct fu_app *app, int argc, char **argv);
/* fu_cli_main with the `backup DIR` and `restore DIR` commands of an app whose data can be
 * backed up (Fusion), done by `b`'s hooks. */
int fu_cli_main_with_backup(const struct fu_app *app, const struct fu_app_backup *b, int argc,
                            char **argv);

#endif
