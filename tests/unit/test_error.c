#include "tests/unit/test.h"
#include "common/error.h"

#include <errno.h>

TEST(set_appends_strerror)
{
	struct msb_err err = {0};
	CHECK_INT(msb_err_set(&err, MSB_EK_SYSTEM, ENOENT, "opening %s", "disk.img"), ==, -1);
	CHECK_STR(err.msg, "opening disk.img: No such file or directory");
	CHECK_INT(err.kind, ==, MSB_EK_SYSTEM);
	CHECK_INT(err.errnum, ==, ENOENT);
}

TEST(wrap_prefixes_context_and_keeps_kind)
{
	struct msb_err err = {0};
	msb_err_set(&err, MSB_EK_NOT_FOUND, 0, "image 'python' is not in the store");
	CHECK_INT(msb_err_wrap(&err, "starting sandbox '%s'", "web"), ==, -1);
	CHECK_STR(err.msg, "starting sandbox 'web': image 'python' is not in the store");
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK_INT(msb_err_exit_code(err.kind), ==, 3);
}

TEST(long_messages_are_truncated_not_overflowed)
{
	struct msb_err err = {0};
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	msb_err_set(&err, MSB_EK_USAGE, EINVAL, "%s", big);
	CHECK_INT(strlen(err.msg), ==, MSB_ERR_MSG_MAX - 1);
	msb_err_wrap(&err, "%s", big);
	CHECK_INT(strlen(err.msg), ==, MSB_ERR_MSG_MAX - 1);
}

TEST(kind_names_are_stable)
{
	CHECK_STR(msb_err_kind_name(MSB_EK_TIMEOUT), "timeout");
	CHECK_STR(msb_err_kind_name((enum msb_err_kind)999), "internal");
}

TEST_MAIN(T(set_appends_strerror), T(wrap_prefixes_context_and_keeps_kind),
	  T(long_messages_are_truncated_not_overflowed), T(kind_names_are_stable))
