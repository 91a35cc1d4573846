package load

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/openmmr/mmr/media"
	"github.com/openmmr/mmr/metrics/scrape"
	"github.com/openmmr/mmr/stats"
)

// Report is what a Run measured; it is written as JSON by `openmmr load`.
type Report struct {
	Shape        string              `json:"shape"`
	Mode         string              `json:"mode"` // "connect" (the connection process) or "direct"
	Meetings     int                 `json:"meetings"`
	Participants int                 `json:"participants_per_meeting"`
	Publishers   map[string]int      `json:"publishers_per_meeting"`
	Window       WindowReport        `json:"window"`
	Joins        JoinReport          `json:"joins"`
	Kinds        []KindReport        `json:"kinds"`
	Series       []SeriesPoint       `json:"series"`
	Self         SelfReport          `json:"load_tool"`
	Router       *RouterReport       `json:"router,omitempty"`
	Protection   ProtectionReport    `json:"media_protection"`
	People       []ParticipantReport `json:"participant_details"`

	delay [media.NumKinds]Hist // for plots
}

// ProtectionReport sums the participants' media protection (SRTP on
// every packet, client/secure): packets sealed and opened, and those
// rejected by reason; a healthy run rejects none (a few Replayed or
// UnknownSender right after joins are the router's duplicates and streams
// not announced yet).
type ProtectionReport struct {
	Sealed        uint64 `json:"sealed"`
	SealErrors    uint64 `json:"seal_errors"` // not sent: no meeting key yet
	Opened        uint64 `json:"opened"`
	Rejected      uint64 `json:"rejected"`
	Auth          uint64 `json:"auth"`
	Replayed      uint64 `json:"replayed"`
	TooOld        uint64 `json:"too_old"`
	UnknownKey    uint64 `json:"unknown_key"`
	UnknownSender uint64 `json:"unknown_sender"`
	Malformed     uint64 `json:"malformed"`
	Unprotected   uint64 `json:"unprotected"` // arrived before the participant's protection was set
}

// WindowReport is the measurement window: packets stamped inside it count.
type WindowReport struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Seconds float64   `json:"seconds"`
}

// JoinReport is the joins: counts, failures by phase and error, and the
// time of each phase (connection process: lookup, zone, mmr, control,
// media, then handover: the UDP kinds' bind on the load tool's sockets).
type JoinReport struct {
	Expected   int                       `json:"expected"`
	Joined     int                       `json:"joined"`
	Failed     int                       `json:"failed"`
	Errors     map[string]int            `json:"errors,omitempty"` // "phase: message" → count
	Phases     map[string]Percentiles    `json:"phases"`
	Transports map[string]map[string]int `json:"transports"` // kind → transport → participants
}

// KindReport is one media kind in the window: expected is what the
// publishers sent times their subscribers; received counts each packet
// once (duplicates apart).
type KindReport struct {
	Kind       string      `json:"kind"`
	Publishers int         `json:"publishers"`
	Expected   uint64      `json:"expected"`
	Received   uint64      `json:"received"`
	Lost       int64       `json:"lost"`
	Loss       float64     `json:"loss"`
	Duplicates uint64      `json:"duplicates"`
	Reordered  uint64      `json:"out_of_order"`
	Delay      Percentiles `json:"delay"`
	// Jitter is the distribution over received streams of each stream's
	// final RFC 3550 interarrival jitter.
	Jitter      Percentiles `json:"jitter"`
	ReceivedAll uint64      `json:"received_all"` // also outside the window (ramp-up, warmup, drain)
}

// SeriesPoint is one second of the window, by send time.
type SeriesPoint struct {
	T     float64             `json:"t"` // seconds since the window start
	Kinds map[string]SeriesKV `json:"kinds"`
}

// SeriesKV is one kind in one second.
type SeriesKV struct {
	Expected uint64  `json:"expected"`
	Received uint64  `json:"received"`
	Loss     float64 `json:"loss"`
	P50      float64 `json:"delay_p50_ms"`
	P99      float64 `json:"delay_p99_ms"`
}

// SelfReport is the load tool's own cost and the signs of its saturation.
type SelfReport struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUCores   float64 `json:"cpu_cores"` // CPU seconds per second of the window
	Cores      int     `json:"cores"`     // GOMAXPROCS
	// KernelDrops: datagrams the kernel dropped at the load tool's full
	// receive queues (SO_RXQ_OVFL), sent by the router but never read.
	KernelDrops uint64 `json:"kernel_receive_drops"`
	SendBusy    uint64 `json:"send_busy"` // frames' packets refused by full send buffers
	// HostUDPRcvbufErrors: UDP datagrams the host dropped at full receive
	// buffers during the window and drain, every socket of the machine
	// (/proc/net/snmp): the router's overflowing sockets count here.
	HostUDPRcvbufErrors uint64 `json:"host_udp_rcvbuf_errors"`
	SendErrors          uint64 `json:"send_errors"`
	LateFrames          uint64 `json:"late_frames"` // frames sent more than an interval behind schedule
	Saturated           bool   `json:"saturated"`
	Why                 string `json:"why"`
}

// RouterReport is the router's /metrics, deltas over the window and drain
// (counters) and values at the end (gauges).
type RouterReport struct {
	URL          string            `json:"url"`
	Error        string            `json:"error,omitempty"`
	PacketsIn    uint64            `json:"packets_in"`
	PacketsOut   uint64            `json:"packets_out"`
	BytesIn      uint64            `json:"bytes_in"`
	BytesOut     uint64            `json:"bytes_out"`
	Drops        map[string]uint64 `json:"drops"`
	CPUSeconds   float64           `json:"cpu_seconds"`
	CPUCores     float64           `json:"cpu_cores"`
	Meetings     float64           `json:"meetings"`
	Participants float64           `json:"participants"`
	// TotalPacketsOut is the router's counter at the end (since its start).
	TotalPacketsOut uint64 `json:"total_packets_out"`
}

// ParticipantReport is one participant: its router participant ID and,
// per kind, what it received in all (RTP, each copy the router sent that
// the load tool read) and in the window.
type ParticipantReport struct {
	Index   int                   `json:"index"`
	Meeting string                `json:"meeting"`
	ID      uint64                `json:"id"`
	Role    string                `json:"role,omitempty"`
	Joined  bool                  `json:"joined"`
	Error   string                `json:"error,omitempty"`
	Kinds   map[string]PartKindRx `json:"kinds,omitempty"`
}

// PartKindRx is one participant's kind.
type PartKindRx struct {
	Transport string `json:"transport"`
	Received  uint64 `json:"received_all"`
	// Rejected counts SRTP datagrams that arrived but did not open (by
	// reason in Report.Protection); they are not in Received.
	Rejected    uint64 `json:"rejected,omitempty"`
	InWindow    uint64 `json:"in_window"`
	KernelDrops uint64 `json:"kernel_receive_drops"`
	Sent        uint64 `json:"sent,omitempty"`
}

func (r *runner) report(rep *Report, t0, t1 time.Time, before, after sample) {
	cfg := &r.cfg
	rep.Shape, rep.Meetings, rep.Participants = cfg.Shape, cfg.Meetings, cfg.Participants
	rep.Mode = "connect"
	if cfg.Direct != nil {
		rep.Mode = "direct"
	}
	rep.Publishers = map[string]int{}
	for _, k := range cfg.Kinds {
		rep.Publishers[k.String()] = cfg.Publishers[k.Index()]
	}
	rep.Window = WindowReport{Start: t0, End: t1, Seconds: t1.Sub(t0).Seconds()}
	pr := &rep.Protection
	for _, p := range r.parts {
		for _, ep := range p.eps {
			if ep != nil {
				pr.Unprotected += ep.unprotected.Load()
			}
		}
		sec := p.sec.Load()
		if sec == nil {
			continue
		}
		st := sec.Stats().RTP
		pr.Sealed += st.Sealed
		pr.SealErrors += st.SealErrors
		pr.Opened += st.Opened
		pr.Rejected += st.Rejected()
		pr.Auth += st.Auth
		pr.Replayed += st.Replayed
		pr.TooOld += st.TooOld
		pr.UnknownKey += st.UnknownKey
		pr.UnknownSender += st.UnknownSender
		pr.Malformed += st.Malformed
	}

	// Joins.
	j := &rep.Joins
	j.Expected, j.Errors, j.Phases, j.Transports = len(r.parts), map[string]int{}, map[string]Percentiles{}, map[string]map[string]int{}
	phases := map[string]*Hist{}
	for _, p := range r.parts {
		pr := ParticipantReport{Index: p.idx, Meeting: p.meeting, ID: p.id, Role: p.role, Joined: p.joined}
		if p.err != nil {
			j.Failed++
			msg := p.err.Error()
			if len(msg) > 160 {
				msg = msg[:160] + "…"
			}
			j.Errors[p.errPhase+": "+msg]++
			pr.Error = msg
		}
		if p.joined {
			j.Joined++
			for ph, d := range p.phases {
				if phases[ph] == nil {
					phases[ph] = &Hist{}
				}
				phases[ph].Add(d)
			}
			pr.Kinds = map[string]PartKindRx{}
			for _, k := range cfg.Kinds {
				ep := p.eps[k.Index()]
				if j.Transports[k.String()] == nil {
					j.Transports[k.String()] = map[string]int{}
				}
				j.Transports[k.String()][ep.transport]++
				pk := PartKindRx{Transport: ep.transport, Received: ep.rtp.Load(), Rejected: ep.rejected.Load() + p.flowRejected(ep.kind), InWindow: ep.inWin.Load(), KernelDrops: uint64(ep.ovfl.Load())}
				if st := p.pubs[k.Index()]; st != nil {
					pk.Sent = st.sentAll
				}
				pr.Kinds[k.String()] = pk
			}
		}
		rep.People = append(rep.People, pr)
	}
	for ph, h := range phases {
		j.Phases[ph] = h.Summary()
	}

	// Kinds.
	// Snapshots of the aggregates: late packets may still arrive.
	var aggs []*agg
	for _, a := range append(r.eng.aggs(), &r.streamAgg) {
		a.mu.Lock()
		c := &agg{inWin: a.inWin, delay: a.delay, series: append([]second(nil), a.series...)}
		a.mu.Unlock()
		aggs = append(aggs, c)
	}
	var exp [][media.NumKinds]uint64
	var late uint64
	for _, s := range r.senders {
		for i, e := range s.exp {
			for len(exp) <= i {
				exp = append(exp, [media.NumKinds]uint64{})
			}
			for k := range e {
				exp[i][k] += e[k]
			}
		}
		for _, st := range s.all {
			late += st.late
		}
	}
	for _, k := range cfg.Kinds {
		ki := k.Index()
		kr := KindReport{Kind: k.String()}
		for _, e := range exp {
			kr.Expected += e[ki]
		}
		var jit Hist
		for _, a := range aggs {
			kr.Received += a.inWin[ki]
			rep.delay[ki].Merge(&a.delay[ki])
		}
		for _, p := range r.parts {
			if st := p.pubs[ki]; st != nil {
				kr.Publishers++
			}
			if !p.joined {
				continue
			}
			ep := p.eps[ki]
			all, dups, reord, jits := ep.streamTotals()
			kr.ReceivedAll += all
			kr.Duplicates += dups
			kr.Reordered += reord
			for _, v := range jits {
				jit.Add(time.Duration(v))
			}
		}
		kr.Lost = int64(kr.Expected) - int64(kr.Received)
		if kr.Expected > 0 {
			kr.Loss = round6(float64(kr.Lost) / float64(kr.Expected))
		}
		kr.Delay, kr.Jitter = rep.delay[ki].Summary(), jit.Summary()
		rep.Kinds = append(rep.Kinds, kr)
	}

	// Series.
	for sec := range exp {
		pt := SeriesPoint{T: float64(sec), Kinds: map[string]SeriesKV{}}
		for _, k := range cfg.Kinds {
			ki := k.Index()
			var rx uint64
			var h coarseHist
			for _, a := range aggs {
				if sec < len(a.series) {
					rx += a.series[sec].rx[ki]
					for b, v := range a.series[sec].delay[ki] {
						h[b] += v
					}
				}
			}
			kv := SeriesKV{Expected: exp[sec][ki], Received: rx, P50: ms(h.quantile(.5, rx)), P99: ms(h.quantile(.99, rx))}
			if kv.Expected > 0 {
				kv.Loss = round6(1 - float64(rx)/float64(kv.Expected))
			}
			pt.Kinds[k.String()] = kv
		}
		rep.Series = append(rep.Series, pt)
	}

	// The load tool itself.
	el := after.at.Sub(before.at).Seconds()
	ss := r.eng.sentStats()
	for _, p := range r.parts {
		for _, ep := range p.eps {
			if ep != nil && ep.fd < 0 {
				st := ep.txLive.Snapshot()
				ss.Drops[stats.DropSendError] += st.Drops[stats.DropSendError]
			}
		}
	}
	self := SelfReport{CPUSeconds: round6((after.cpu - before.cpu).Seconds()), Cores: runtime.GOMAXPROCS(0), KernelDrops: r.kernelDrops(),
		SendBusy: ss.Drops[stats.DropSendBusy], SendErrors: ss.Drops[stats.DropSendError], LateFrames: late,
		HostUDPRcvbufErrors: after.rcvbuf - before.rcvbuf}
	if el > 0 {
		self.CPUCores = round6(self.CPUSeconds / el)
	}

	// The router.
	if cfg.MetricsURL != "" {
		rr := &RouterReport{URL: cfg.MetricsURL, Drops: map[string]uint64{}}
		switch {
		case before.err != nil:
			rr.Error = before.err.Error()
		case after.err != nil:
			rr.Error = after.err.Error()
		default:
			d := func(name string) uint64 { return uint64(math.Max(0, after.metrics[name]-before.metrics[name])) }
			rr.PacketsIn, rr.PacketsOut, rr.BytesIn, rr.BytesOut = d("mmr_packets_in_total"), d("mmr_packets_out_total"), d("mmr_bytes_in_total"), d("mmr_bytes_out_total")
			rr.TotalPacketsOut = uint64(after.metrics["mmr_packets_out_total"])
			for i := range stats.NumDropReasons {
				if v := d(`mmr_drops_total{reason="` + i.String() + `"}`); v > 0 {
					rr.Drops[i.String()] = v
				}
			}
			rr.CPUSeconds = round6(after.metrics["process_cpu_seconds_total"] - before.metrics["process_cpu_seconds_total"])
			if el > 0 {
				rr.CPUCores = round6(rr.CPUSeconds / el)
			}
			rr.Meetings, rr.Participants = after.metrics["mmr_meetings"], after.metrics["mmr_participants"]
		}
		rep.Router = rr
	}

	// Saturation: the load tool's own symptoms first.
	var why []string
	if self.KernelDrops > 0 {
		why = append(why, fmt.Sprintf("%d datagrams dropped at the load tool's full receive queues", self.KernelDrops))
	}
	if self.SendBusy > 0 {
		why = append(why, fmt.Sprintf("%d packets refused by the load tool's full send buffers", self.SendBusy))
	}
	if self.LateFrames > 0 {
		if self.CPUCores < 0.5*float64(self.Cores) {
			why = append(why, fmt.Sprintf("%d frames sent over an interval late while it used only %.2f of %d cores: the host's CPU is contended (other processes)",
				self.LateFrames, self.CPUCores, self.Cores))
		} else {
			why = append(why, fmt.Sprintf("%d frames sent over an interval late", self.LateFrames))
		}
	}
	if self.CPUCores > 0.85*float64(self.Cores) {
		why = append(why, fmt.Sprintf("the load tool used %.2f of %d cores", self.CPUCores, self.Cores))
	}
	self.Saturated = len(why) > 0
	if n := self.HostUDPRcvbufErrors; n > self.KernelDrops {
		why = append(why, fmt.Sprintf("%d more datagrams dropped at full UDP receive buffers elsewhere on the host (the router's sockets, if it runs here)", n-self.KernelDrops))
	}
	if self.Saturated {
		self.Why = "the load tool, not the router, limited this run: " + strings.Join(why, "; ")
	} else {
		self.Why = fmt.Sprintf("not saturated: %.2f of %d cores, no kernel drops at the load tool, no late frames", self.CPUCores, self.Cores)
	}
	rep.Self = self
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// Check returns the threshold violations: loss of any kind above maxLoss
// (a fraction), or more than maxJoinFailures failed joins.
func (rep *Report) Check(maxLoss float64, maxJoinFailures int) []string {
	var out []string
	if rep.Joins.Failed > maxJoinFailures {
		out = append(out, fmt.Sprintf("%d join failures (threshold %d)", rep.Joins.Failed, maxJoinFailures))
	}
	for _, k := range rep.Kinds {
		if k.Loss > maxLoss {
			out = append(out, fmt.Sprintf("%s loss %.4f%% (threshold %.4f%%)", k.Kind, 100*k.Loss, 100*maxLoss))
		}
	}
	return out
}

// WriteTable writes the human summary.
func (rep *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "%s, %s mode: %d meetings × %d participants, window %.1f s\n", rep.Shape, rep.Mode, rep.Meetings, rep.Participants, rep.Window.Seconds)
	fmt.Fprintf(w, "joins: %d of %d, %d failed\n", rep.Joins.Joined, rep.Joins.Expected, rep.Joins.Failed)
	for _, e := range sortedKeys(rep.Joins.Errors) {
		fmt.Fprintf(w, "  %d× %s\n", rep.Joins.Errors[e], e)
	}
	fmt.Fprintln(tw, "phase\tn\tp50 ms\tp90 ms\tp99 ms\tmax ms\t")
	order := []string{"lookup", "zone", "mmr", "control", "media", "handover", "total"}
	for _, ph := range order {
		if p, ok := rep.Joins.Phases[ph]; ok {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", ph, p.N, p.P50, p.P90, p.P99, p.Max)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "kind\tpubs\texpected\treceived\tloss %\tdup\tooo\tdelay p50\tp99\tmax ms\tjitter p50\tp99 ms\t")
	for _, k := range rep.Kinds {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", k.Kind, k.Publishers, k.Expected, k.Received, 100*k.Loss,
			k.Duplicates, k.Reordered, k.Delay.P50, k.Delay.P99, k.Delay.Max, k.Jitter.P50, k.Jitter.P99)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nload tool: %.2f CPU cores (%.1f s); %s\n", rep.Self.CPUCores, rep.Self.CPUSeconds, rep.Self.Why)
	pr := rep.Protection
	fmt.Fprintf(w, "media protection: %d sealed, %d opened, %d rejected (auth %d, replayed %d, too old %d, unknown key %d, unknown sender %d, malformed %d), %d not sealed (no key yet)\n",
		pr.Sealed, pr.Opened, pr.Rejected, pr.Auth, pr.Replayed, pr.TooOld, pr.UnknownKey, pr.UnknownSender, pr.Malformed, pr.SealErrors)
	if n := rep.Self.HostUDPRcvbufErrors; n > 0 {
		fmt.Fprintf(w, "host: %d UDP datagrams dropped at full receive buffers (/proc/net/snmp RcvbufErrors)\n", n)
	}
	if r := rep.Router; r != nil {
		if r.Error != "" {
			fmt.Fprintf(w, "router: %s: %s\n", r.URL, r.Error)
		} else {
			fmt.Fprintf(w, "router: %.2f CPU cores (%.1f s), %d packets in, %d out, drops %v\n", r.CPUCores, r.CPUSeconds, r.PacketsIn, r.PacketsOut, r.Drops)
		}
	}
}

// Scrape reads a Prometheus text endpoint into "name" or
// `name{label="value",...}` (labels sorted) → value; histograms and
// summaries give name_count and name_sum.
func Scrape(url string) (map[string]float64, error) {
	fams, err := scrape.Families(url)
	if err != nil {
		return nil, err
	}
	return Flatten(fams), nil
}

// Flatten turns parsed families into Scrape's map.
func Flatten(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name
			if len(m.GetLabel()) > 0 {
				ls := make([]string, 0, len(m.GetLabel()))
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				sort.Strings(ls)
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.GetHistogram().GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.GetHistogram().GetSampleSum()
			case m.Summary != nil:
				out[strings.Replace(key, name, name+"_count", 1)] = float64(m.GetSummary().GetSampleCount())
				out[strings.Replace(key, name, name+"_sum", 1)] = m.GetSummary().GetSampleSum()
			}
		}
	}
	return out
}
