/* See shim.h: each function forwards to one DPDK static inline so Rust can link to it. */
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_ring.h>

#include "shim.h"

uint16_t fulcrum_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts,
			  uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, pkts, nb_pkts);
}

uint16_t fulcrum_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts,
			  uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, pkts, nb_pkts);
}

struct rte_mbuf *fulcrum_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void fulcrum_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

unsigned int fulcrum_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n,
					unsigned int *free_space)
{
	return rte_ring_enqueue_burst(r, objs, n, free_space);
}

unsigned int fulcrum_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n,
					unsigned int *available)
{
	return rte_ring_dequeue_burst(r, objs, n, available);
}

unsigned int fulcrum_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}

int fulcrum_errno(void)
{
	return rte_errno;
}

unsigned int fulcrum_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t fulcrum_rdtsc(void)
{
	return rte_rdtsc();
}

void fulcrum_pause(void)
{
	rte_pause();
}
