#include "config.h"
#include "bgs-sim.h"
void sim_monitor_add_iface (SimAdapter *adapter) {}
void sim_monitor_seen (SimAdapter *adapter, SimPeer *peer) {}
void sim_monitor_lost (SimAdapter *adapter, SimPeer *peer) {}
void sim_monitor_adapter_down (SimAdapter *adapter) {}
