package loadtest

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The files the run writes into TASKD_LOAD_OUT.
const (
	loadCSVName = "reliability-load.csv"
	loadPNGName = "reliability-load.png"
)

// loadListeners are taskd's connections outside its pool: River's
// listener (a pool connection it hijacks, so the pool may open another)
// and taskd's three LISTEN connections (store.ListenInserts,
// ListenFinished, ListenWaited), each opened on first use.
const loadListeners = 4

const mib = 1 << 20

// A bound: the peak of the last third may be at most growth × the peak of
// the middle third, plus slack.
//
// Why 1.25: a quantity that levels off has the same peak in both thirds;
// one growing linearly from zero peaks 1.5× higher in the last third than
// in the middle one, whatever its rate, so a factor under 1.5 is what lets
// linear growth fail at all (1.5 never would). 1.25 keeps half of that
// margin for noise: a leak of r per second, over a run of T, on top of a
// level B, fails the bound once r·T/6 > 0.25·B + slack. The slacks are
// each quantity's noise at this load (see loadMetrics); the backends'
// bound is absolute instead.
const loadGrowth = 1.25

// loadMetric is a sampled quantity in the summary, and its bound if it
// has one.
type loadMetric struct {
	name  string
	value func(s sample) float64
	// slack, if not zero, makes the metric bounded: see loadGrowth.
	slack float64
	// table is whether it is a table's size, bounded only on a server
	// that vacuums.
	table bool
}

func tableMiB(table string) func(s sample) float64 {
	return func(s sample) float64 { return float64(s.Tables[table].TotalBytes) / mib }
}

var loadMetrics = []loadMetric{
	// 32 MiB: Go's heap grows to twice the live heap before a collection,
	// so RSS moves by the live heap (some MiB here) with where a sample
	// falls in a GC cycle, and the runtime returns freed pages lazily.
	{name: "RSS MiB", value: func(s sample) float64 { return float64(s.RSS) / mib }, slack: 32},
	// 20: the connections of the test's senders and readers (up to 10,
	// each a goroutine in taskd) and the running tasks (up to 20) come and
	// go with latency.
	{name: "goroutines", value: func(s sample) float64 { return s.Goroutines }, slack: 20},
	{name: "pool open conns", value: func(s sample) float64 { return s.PoolTotal }},
	{name: "pg backends (taskd)", value: func(s sample) float64 { return float64(s.Backends) }},
	// 8 MiB: a table grows by extension steps, and how much is dead
	// depends on when autovacuum last passed (its naptime is a minute).
	// At 45 s the tables only grow (one cleaner run, no vacuum yet): they
	// pass because the slack exceeds a sixth of what 45 s of this load
	// writes; at 10 minutes the retention has to hold them.
	{name: "river_job MiB", value: tableMiB("river_job"), slack: 8, table: true},
	{name: "river_job index MiB", value: func(s sample) float64 { return float64(s.Tables["river_job"].IndexBytes) / mib }},
	{name: "task_attempts MiB", value: tableMiB("task_attempts"), slack: 8, table: true},
	{name: "batches MiB", value: tableMiB("batches")},
	{name: "idempotency_keys MiB", value: tableMiB("idempotency_keys")},
	// Dead tuples are reported, not bounded: their count is a sawtooth set
	// by when autovacuum passes; the bloat they leave shows in the sizes.
	{name: "river_job dead", value: func(s sample) float64 { return float64(s.Tables["river_job"].Dead) }},
	{name: "river_job live", value: func(s sample) float64 { return float64(s.Tables["river_job"].Live) }},
	{name: "river_job rows", value: func(s sample) float64 { return float64(s.Rows) }},
	{name: "task_attempts dead", value: func(s sample) float64 { return float64(s.Tables["task_attempts"].Dead) }},
	{name: "river_job autovacuums", value: func(s sample) float64 { return float64(s.Tables["river_job"].Autovacuums) }},
	{name: "queue depth", value: func(s sample) float64 { return float64(s.Available + s.Running) }},
	{name: "submit p99 ms (single)", value: func(s sample) float64 { return ms(s.SingleP99) }},
	{name: "submit p99 ms (batch)", value: func(s sample) float64 { return ms(s.BatchP99) }},
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report splits the samples of the load into thirds: the first is
// warm-up, the middle and the last are compared.
type report struct {
	samples               []sample
	first, middle, last   []sample
	duration, loadEnd     time.Duration
	maxConns, maxBackends int
	// checkTables is whether the tables' bounds are checked.
	checkTables bool
}

func newReport(samples []sample, duration, loadEnd time.Duration, maxConns int) *report {
	r := &report{samples: samples, duration: duration, loadEnd: loadEnd, maxConns: maxConns}
	for _, s := range samples {
		switch {
		case s.At < duration/3:
			r.first = append(r.first, s)
		case s.At < 2*duration/3:
			r.middle = append(r.middle, s)
		case s.At <= loadEnd:
			r.last = append(r.last, s)
		}
		r.maxBackends = max(r.maxBackends, s.Backends)
	}
	return r
}

func peak(ss []sample, f func(sample) float64) float64 {
	m := 0.0
	for i, s := range ss {
		if v := f(s); i == 0 || v > m {
			m = v
		}
	}
	return m
}

// log logs the summary table: per metric, the first sample's value (before
// the load), the peaks of the three thirds, and the bound.
func (r *report) log(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "samples: %d in the first third, %d in the middle, %d in the last, %d in the tail\n",
		len(r.first), len(r.middle), len(r.last), len(r.samples)-len(r.first)-len(r.middle)-len(r.last))
	fmt.Fprintf(&b, "%-24s %10s %10s %12s %12s %12s\n", "metric", "start", "first max", "middle max", "last max", "bound")
	for _, m := range loadMetrics {
		bound := ""
		if m.slack != 0 {
			bound = fmt.Sprintf("%.1f", r.bound(m))
		}
		if m.name == "pg backends (taskd)" {
			bound = fmt.Sprintf("%d (all)", r.maxConns+loadListeners)
		}
		start := 0.0
		if len(r.samples) > 0 {
			start = m.value(r.samples[0])
		}
		fmt.Fprintf(&b, "%-24s %10.1f %10.1f %12.1f %12.1f %12s\n", m.name, start,
			peak(r.first, m.value), peak(r.middle, m.value), peak(r.last, m.value), bound)
	}
	if n := len(r.samples); n >= 2 {
		a, z := r.samples[0], r.samples[n-1]
		fmt.Fprintf(&b, "throughput over the run: %.1f tasks/s final (%d in %s)",
			float64(z.Final-a.Final)/(z.At-a.At).Seconds(), z.Final-a.Final, (z.At - a.At).Round(time.Second))
	}
	t.Logf("summary:\n%s", b.String())
}

func (r *report) bound(m loadMetric) float64 {
	return loadGrowth*peak(r.middle, m.value) + m.slack
}

// check fails t for every bound a metric broke.
func (r *report) check(t *testing.T) {
	t.Helper()
	if len(r.middle) < 3 || len(r.last) < 3 {
		t.Errorf("too few samples to compare: %d in the middle third, %d in the last", len(r.middle), len(r.last))
		return
	}
	if !r.checkTables {
		t.Logf("table sizes are not bounded: autovacuum is off on this server, so nothing reclaims what the cleaner deletes")
	}
	for _, m := range loadMetrics {
		if m.slack == 0 || (m.table && !r.checkTables) {
			continue
		}
		if got, bound := peak(r.last, m.value), r.bound(m); got > bound {
			t.Errorf("%s grows: peak %.1f in the last third, over %.2f × %.1f (the middle third's) + %.0f = %.1f",
				m.name, got, loadGrowth, peak(r.middle, m.value), m.slack, bound)
		}
	}
	// taskd opens no connection but its pool's and its listeners', ever.
	if r.maxBackends > r.maxConns+loadListeners {
		t.Errorf("taskd had %d backends, more than its pool (%d) and listeners (%d)", r.maxBackends, r.maxConns, loadListeners)
	}
}

// csvColumn is a column of the CSV.
type csvColumn struct {
	name  string
	value func(s sample) string
}

// csvColumns are the CSV's columns: the sample's, then per table its
// live and dead tuples, autovacuums, total and index bytes.
func csvColumns() []csvColumn {
	cols := []csvColumn{
		{"t_s", func(s sample) string { return fmt.Sprintf("%.1f", s.At.Seconds()) }},
		{"rss_bytes", func(s sample) string { return strconv.FormatInt(s.RSS, 10) }},
		{"goroutines", func(s sample) string { return fmt.Sprint(s.Goroutines) }},
		{"pool_total", func(s sample) string { return fmt.Sprint(s.PoolTotal) }},
		{"pool_acquired", func(s sample) string { return fmt.Sprint(s.PoolAcquired) }},
		{"backends", func(s sample) string { return strconv.Itoa(s.Backends) }},
		{"river_job_rows", func(s sample) string { return strconv.FormatInt(s.Rows, 10) }},
		{"available", func(s sample) string { return strconv.FormatInt(s.Available, 10) }},
		{"running", func(s sample) string { return strconv.FormatInt(s.Running, 10) }},
		{"acked", func(s sample) string { return strconv.Itoa(s.Acked) }},
		{"final", func(s sample) string { return strconv.Itoa(s.Final) }},
		{"submit_p99_single_ms", func(s sample) string { return fmt.Sprintf("%.2f", ms(s.SingleP99)) }},
		{"submit_p99_batch_ms", func(s sample) string { return fmt.Sprintf("%.2f", ms(s.BatchP99)) }},
		{"submits_single", func(s sample) string { return strconv.Itoa(s.SingleN) }},
		{"submits_batch", func(s sample) string { return strconv.Itoa(s.BatchN) }},
	}
	for _, table := range loadTables {
		for _, col := range []struct {
			suffix string
			value  func(tableSample) int64
		}{
			{"live", func(ts tableSample) int64 { return ts.Live }},
			{"dead", func(ts tableSample) int64 { return ts.Dead }},
			{"autovacuums", func(ts tableSample) int64 { return ts.Autovacuums }},
			{"total_bytes", func(ts tableSample) int64 { return ts.TotalBytes }},
			{"index_bytes", func(ts tableSample) int64 { return ts.IndexBytes }},
		} {
			cols = append(cols, csvColumn{table + "_" + col.suffix,
				func(s sample) string { return strconv.FormatInt(col.value(s.Tables[table]), 10) }})
		}
	}
	return cols
}

func writeCSV(dir string, samples []sample) error {
	f, err := os.Create(filepath.Join(dir, loadCSVName))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	cols := csvColumns()
	row := make([]string, len(cols))
	for i, c := range cols {
		row[i] = c.name
	}
	_ = w.Write(row)
	for _, s := range samples {
		for i, c := range cols {
			row[i] = c.value(s)
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// series is one line of a panel.
type series struct {
	name  string
	value func(i int, s []sample) float64
}

func at(f func(sample) float64) func(int, []sample) float64 {
	return func(i int, s []sample) float64 { return f(s[i]) }
}

// perSecond is the rate of a cumulative count between sample i-1 and i.
func perSecond(f func(sample) int) func(int, []sample) float64 {
	return func(i int, s []sample) float64 {
		if i == 0 {
			return 0
		}
		return float64(f(s[i])-f(s[i-1])) / (s[i].At - s[i-1].At).Seconds()
	}
}

// loadPanels are the plot's panels, top to bottom.
var loadPanels = []struct {
	title  string
	series []series
}{
	{"taskd RSS (MiB)", []series{{"VmRSS", at(func(s sample) float64 { return float64(s.RSS) / mib })}}},
	{"goroutines", []series{{"go_goroutines", at(func(s sample) float64 { return s.Goroutines })}}},
	{"connections", []series{
		{"PostgreSQL backends (application_name taskd)", at(func(s sample) float64 { return float64(s.Backends) })},
		{"pool open", at(func(s sample) float64 { return s.PoolTotal })},
		{"pool acquired", at(func(s sample) float64 { return s.PoolAcquired })},
	}},
	{"table size (MiB, with indexes)", []series{
		{"river_job", at(tableMiB("river_job"))},
		{"river_job indexes", at(func(s sample) float64 { return float64(s.Tables["river_job"].IndexBytes) / mib })},
		{"task_attempts", at(tableMiB("task_attempts"))},
		{"idempotency_keys", at(tableMiB("idempotency_keys"))},
		{"batches", at(tableMiB("batches"))},
	}},
	{"tuples (pg_stat_user_tables)", []series{
		{"river_job n_dead_tup", at(func(s sample) float64 { return float64(s.Tables["river_job"].Dead) })},
		{"river_job rows", at(func(s sample) float64 { return float64(s.Rows) })},
		{"task_attempts n_dead_tup", at(func(s sample) float64 { return float64(s.Tables["task_attempts"].Dead) })},
	}},
	{"tasks", []series{
		{"acknowledged /s", perSecond(func(s sample) int { return s.Acked })},
		{"seen final /s", perSecond(func(s sample) int { return s.Final })},
		{"queue depth (available + running)", at(func(s sample) float64 { return float64(s.Available + s.Running) })},
	}},
	{"submit latency p99 per sample (ms)", []series{
		{"POST /v1/tasks", at(func(s sample) float64 { return ms(s.SingleP99) })},
		{fmt.Sprintf("POST /v1/batches (%d tasks)", loadBatchSize), at(func(s sample) float64 { return ms(s.BatchP99) })},
	}},
}

// writePlot draws the panels stacked, on one time axis, with dashed lines
// where the thirds the bounds compare begin and where submitting stopped.
func writePlot(dir string, samples []sample, r *report, title string) error {
	if len(samples) == 0 {
		return fmt.Errorf("no samples")
	}
	plots := make([][]*plot.Plot, len(loadPanels))
	for i, panel := range loadPanels {
		p := plot.New()
		if i == 0 {
			p.Title.Text = title
		}
		p.Y.Label.Text = panel.title
		if i == len(loadPanels)-1 {
			p.X.Label.Text = "seconds since the first submission (dashed: thirds compared, end of submitting)"
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		p.Add(plotter.NewGrid())
		for j, se := range panel.series {
			xys := make(plotter.XYs, len(samples))
			for k := range samples {
				xys[k] = plotter.XY{X: samples[k].At.Seconds(), Y: se.value(k, samples)}
			}
			line, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			line.Color = plotutil.Color(j)
			line.Width = vg.Points(1.5)
			p.Add(line)
			p.Legend.Add(se.name, line)
		}
		p.Y.Min = min(p.Y.Min, 0)
		p.Y.Max = max(p.Y.Max*1.35, 1) // room for the legend
		for _, x := range []time.Duration{r.duration / 3, 2 * r.duration / 3, r.loadEnd} {
			mark, err := plotter.NewLine(plotter.XYs{{X: x.Seconds(), Y: p.Y.Min}, {X: x.Seconds(), Y: p.Y.Max}})
			if err != nil {
				return err
			}
			mark.Color = color.Gray{Y: 128}
			mark.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(mark)
		}
		plots[i] = []*plot.Plot{p}
	}
	const width, panelHeight = 10 * vg.Inch, 2.4 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, panelHeight*vg.Length(len(plots))), vgimg.UseDPI(96))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(filepath.Join(dir, loadPNGName))
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
