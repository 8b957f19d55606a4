/* Out-of-line wrappers for DPDK's static inline functions and thread-local variables, which
 * Rust cannot call or read. Only burst-level and per-thread calls live here: per-packet
 * accessors (data pointer, lengths) read the mbuf fields from Rust, so no packet pays for a
 * C call. */
#ifndef FULCRUM_SHIM_H
#define FULCRUM_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t fulcrum_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts,
			  uint16_t nb_pkts);
uint16_t fulcrum_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts,
			  uint16_t nb_pkts);

struct rte_mbuf *fulcrum_pktmbuf_alloc(struct rte_mempool *mp);
void fulcrum_pktmbuf_free(struct rte_mbuf *m);

unsigned int fulcrum_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n,
					unsigned int *free_space);
unsigned int fulcrum_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n,
					unsigned int *available);
unsigned int fulcrum_ring_count(const struct rte_ring *r);

int fulcrum_errno(void);
unsigned int fulcrum_lcore_id(void);
uint64_t fulcrum_rdtsc(void);
void fulcrum_pause(void);

#endif /* FULCRUM_SHIM_H */
