#include "config.h"
#include "bgs-sim.h"
void sim_profile_manager_register (Sim *sim, SimObject *root) {}
void sim_profile_connect (SimDevice *dev, const gchar *uuid, GDBusMethodInvocation *inv) { sim_return_error (inv, "NotSupported", "x"); }
gboolean sim_profile_disconnect (SimDevice *dev, const gchar *uuid, GError **error) { return TRUE; }
void sim_profile_link_down (SimLink *link) {}
void sim_profile_release_all (Sim *sim) {}
