/* bgs-profile-smp.h: the smp-firmware-update and smp-file-sync entry points */
#pragma once

#include "bgs-profile.h"

void bgs_profile_smp_register (void);

/* the model's [Profile smp-firmware-update], else [Profile smp], parameters
 * (doc/smp.md "Profile parameters"); a bad value or unknown key adds one
 * message naming @origin (model file and group) to @warnings and the
 * default is used */
typedef struct {
	guint version;              /* Version: SMP 1 or 2 */
	gint64 request_timeout_usec; /* RequestTimeout: seconds */
	guint retries;              /* Retries: 0..10 */
	guint window;               /* Window: requests in flight at most */
	gboolean os_params;         /* OsParams: ask OS command 6 */
	char **files;               /* Files: device paths, NULL: not set */
	gdouble throughput;         /* Throughput: bytes/s, 0: not set */
	guint reboot_seconds;       /* RebootSeconds */
} BgsSmpParams;

void bgs_smp_params_init (BgsSmpParams *p);
void bgs_smp_params_parse (GHashTable *params, const char *origin, BgsSmpParams *p,
			   GPtrArray *warnings);
void bgs_smp_params_clear (BgsSmpParams *p);
