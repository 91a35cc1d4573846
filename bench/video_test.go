package bench

// Video-like traffic (scenario.video): a video encoder's packetizer cuts
// each frame into packets of the path's payload size, the last one shorter,
// and sends them back to back. The publisher sends frames of 5 to 10
// packets (one burst each, a cycle of videoMinFrame..videoMaxFrame), every
// packet scenario.size bytes long but for the last of each frame, whose
// length varies with the sequence number. Frame boundaries and lengths are
// functions of the RTP sequence number, so the receivers check every
// length without being told.
const (
	videoMinFrame = 5
	videoMaxFrame = 10
	// videoCycle is the packets of one cycle of frames: 5 + 6 + ... + 10.
	videoCycle = (videoMinFrame + videoMaxFrame) * (videoMaxFrame - videoMinFrame + 1) / 2
)

// videoFrame returns where packet seq stands in its frame: its index and
// the frame's length. (At the wrap of the 16-bit sequence number one frame
// is cut short.)
func videoFrame(seq uint16) (idx, n int) {
	p := int(seq) % videoCycle
	for n = videoMinFrame; p >= n; n++ {
		p -= n
	}
	return p, n
}

// videoLen is the length of packet seq of video traffic of packet size
// size: size, or for the last packet of a frame a quarter, half or three
// quarters of the payload (by seq), always shorter than size.
func videoLen(seq uint16, size int) int {
	idx, n := videoFrame(seq)
	if idx < n-1 {
		return size
	}
	return rtpHeaderLen + (size-rtpHeaderLen)*(1+int(seq)%3)/4
}

// videoPairs are BenchmarkRatio's video rows, at fan-out 50 with 1200-byte
// packets: the router with GSO (mmr) against the plain C floor (the bar:
// at most 0.67) and against the C floor with GSO, and for reference the
// router without GSO and the C floor with GSO against the plain C floor.
func videoPairs() [][2]string {
	return [][2]string{
		{implMMR, implCFloor}, {implMMR, implCFloorGSO}, {implMMRNoGSO, implCFloor}, {implCFloorGSO, implCFloor},
	}
}
