package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// percentile returns the p-th percentile (0–100) of sorted by nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary is the median, min and max of a set of runs.
type summary struct {
	Median, Min, Max float64
	N                int
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Median: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

func (s summary) String() string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return num(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", num(s.Median), num(s.Min), num(s.Max))
}

// num formats a measurement with three significant digits or so.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "—"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 10:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// row is one line of the final table: a metric of taskd (A) and of its
// baseline (B), one sample per run.
type row struct {
	Scenario string
	Metric   string
	A, B     []float64
	Baseline string // what B is, or a note when there is no B
	Target   string
}

func (r row) ratio() string {
	if len(r.A) == 0 || len(r.B) == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", summarize(r.A).Median/summarize(r.B).Median)
}

func (b *bench) addRow(r row) { b.table = append(b.table, r) }

// compare prints one comparison as soon as its runs are done.
func (b *bench) compare(r row) {
	fmt.Fprintf(b.out, "  => %s %s: taskd %s | %s %s | ratio %s\n", r.Scenario, r.Metric, summarize(r.A), r.Baseline, summarize(r.B), r.ratio())
	b.addRow(r)
}

// printTable prints the final table. The smoke test looks for the
// "FINAL TABLE" heading and a row for every scenario.
func (b *bench) printTable() {
	fmt.Fprintln(b.out, "\nFINAL TABLE (median [min–max] over runs; ratio = median taskd / median baseline)")
	tw := tabwriter.NewWriter(b.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\ttaskd\tbaseline\tratio\tbaseline is\ttarget")
	for _, r := range b.table {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Metric, summarize(r.A), summarize(r.B), r.ratio(), r.Baseline, r.Target)
	}
	tw.Flush()
	fmt.Fprintln(b.out, strings.Repeat("-", 40))
}
