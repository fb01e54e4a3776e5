/* The command line both binaries share (see cli.c for commands and exit codes). */
#ifndef FU_CLI_H
#define FU_CLI_H

#include "common/service.h"

int fu_cli_main(const struct fu_app *app, int argc, char **argv);

#endif
