#include <stdio.h>

#include "cli/cli.h"

int cmd_version(int argc, char **argv);

int cmd_version(int argc, char **argv)
{
	printf("msb v%s\n", MSB_VERSION);
	return 0;
}
