/* bgs-profile-test.h: the "test" entry point (tests and demos only) */
#pragma once

#include "bgs-profile.h"

void bgs_profile_test_register (void);
