#include <rte_errno.h>
#include <rte_mbuf.h>
#include "shim.h"

int vs_errno(void) { return rte_errno; }
void *vs_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
void vs_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n) { rte_pktmbuf_free_bulk(m, n); }
