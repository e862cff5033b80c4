package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
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

// pairs summarizes the ratios of paired runs, A[i] / B[i], where each pair
// ran back to back (the comparisons that alternate their order): the
// ratio of medians that compare prints hides how the pairs split, and on
// a machine whose speed drifts by more than the effect measured, the
// split is what says whether one side is faster.
type pairs struct {
	Ratios []float64
	// AtLeast1 counts the pairs whose ratio is 1.0 or more.
	AtLeast1 int
	// SignP is the one-sided sign test's p-value for "A is faster":
	// the chance that as many of the pairs that are not ties (a ratio
	// of exactly 1) or more have A ahead, if each were a coin toss.
	// Small says A is faster; about 0.5 or more says the pairs do not
	// tell.
	SignP float64
}

func pairRatios(a, b []float64) pairs {
	var p pairs
	ahead, ties := 0, 0
	for i := range min(len(a), len(b)) {
		if b[i] == 0 {
			continue
		}
		r := a[i] / b[i]
		p.Ratios = append(p.Ratios, r)
		switch {
		case r > 1:
			ahead++
			p.AtLeast1++
		case r == 1:
			ties++
			p.AtLeast1++
		}
	}
	p.SignP = signTest(ahead, len(p.Ratios)-ties)
	return p
}

// signTest returns P(X ≥ k) for X binomial with n trials of 1/2.
func signTest(k, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	var sum float64
	for i := k; i <= n; i++ {
		sum += binomial(n, i)
	}
	return sum / math.Pow(2, float64(n))
}

func binomial(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}

func (p pairs) String() string {
	if len(p.Ratios) == 0 {
		return "—"
	}
	rs := make([]string, len(p.Ratios))
	for i, r := range p.Ratios {
		rs[i] = fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("%s | median %.2f | %d of %d at 1.0 or more (sign test, one-sided p = %s)",
		strings.Join(rs, " "), summarize(p.Ratios).Median, p.AtLeast1, len(p.Ratios), formatP(p.SignP))
}

// formatP writes a probability with two decimals, or two significant
// digits below 0.01, where two decimals would read 0.00 (8 of 8 pairs:
// 0.0039).
func formatP(p float64) string {
	if p < 0.01 {
		return strconv.FormatFloat(p, 'g', 2, 64)
	}
	return fmt.Sprintf("%.2f", p)
}

// comparePairs prints the pair ratios of a comparison whose runs ran in
// alternating pairs, A[i] beside B[i].
func (b *bench) comparePairs(scenario, metric string, a, bs []float64) {
	fmt.Fprintf(b.out, "  => %s %s pairs: %s\n", scenario, metric, pairRatios(a, bs))
}
