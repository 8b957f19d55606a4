/* Everything bindgen reads: the DPDK public headers Fulcrum uses, plus the C shim.
 * rte_config.h comes in through pkg-config's `-include rte_config.h`. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_version.h>
#include <rte_log.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

#include "shim.h"
