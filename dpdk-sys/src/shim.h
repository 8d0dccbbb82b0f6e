/* Hand-written shim for what bindgen's wrap-static-fns cannot reach. */
#ifndef VS_SHIM_H
#define VS_SHIM_H
#include <stdint.h>
struct rte_mbuf;
/* rte_errno is a per-lcore (thread-local) variable behind a macro. */
int vs_errno(void);
/* rte_pktmbuf_mtod is a macro. */
void *vs_pktmbuf_mtod(struct rte_mbuf *m);
/* Frees `n` mbufs (rte_pktmbuf_free_bulk is not inline, kept here for symmetry). */
void vs_pktmbuf_free_bulk(struct rte_mbuf **m, unsigned int n);
#endif
