/* bgs-profile-smp.h: the smp-firmware-update and smp-file-sync entry points */
#pragma once

#include "bgs-profile.h"

void bgs_profile_smp_register (void);
