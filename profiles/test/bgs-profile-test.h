/* bgs-profile-test.h: the "test" entry point (tests and demos only) */
#pragma once

#include "bgs-profile.h"

/* registers "test" and "test-rfcomm" */
void bgs_profile_test_register (void);
void bgs_profile_test_rfcomm_register (void);
