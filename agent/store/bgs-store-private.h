/* bgs-store-private.h: hooks for tests, not for the daemon */
#pragma once

#include "bgs-store.h"

G_BEGIN_DECLS

/* one line per statement the store prepares whose query plan walks a whole
 * table without an index ("" when every lookup is indexed) */
char *bgs_store_get_full_scans (BgsStore *self, GError **error);

G_END_DECLS
