// Package ingress receives the router's UDP datagrams: a group of
// SO_REUSEPORT sockets per listen address (one per reader thread, so the
// kernel spreads flows over every core), each read with recvmmsg(2) into a
// preallocated Batch, with no allocation per packet.
//
// Ownership: a Batch and its buffers belong to the one reader goroutine that
// calls Socket.Read with it; packet slices returned by Batch.Packet are valid
// until the next Read on that Batch.
package ingress
