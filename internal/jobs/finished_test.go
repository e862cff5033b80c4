package jobs

import (
	"slices"
	"testing"

	"github.com/riverqueue/river/rivertype"
)

// TestFinishedBatches: a finished task's batch is read from its metadata
// as PostgreSQL writes it, each batch once in a row; a task whose metadata
// names a batch in a way that cannot be read is handed on by ID (its
// batch is then looked up in the database), and one outside any batch
// (a batch_id further in, say in its output) not at all.
func TestFinishedBatches(t *testing.T) {
	var f Finished
	for i, meta := range []string{
		`{"batch_id": 12}`,
		`{"timeout": "30s", "batch_id": 12}`,
		`{"output": {"result": 2}, "batch_id": 7}`,
		`{}`,
		`{"output": {"batch_id": 9}}`,
		`{"batch_id": "12"}`,
		`{"batch_id": 1e3}`,
		`{"batch_id": 12}`,
	} {
		f.add(&rivertype.JobRow{ID: int64(100 + i), Metadata: []byte(meta)})
	}
	if want := []int64{12, 7, 12}; !slices.Equal(f.Batches, want) {
		t.Errorf("batches %v, want %v", f.Batches, want)
	}
	if want := []int64{105, 106}; !slices.Equal(f.Tasks, want) {
		t.Errorf("tasks %v, want %v", f.Tasks, want)
	}
}
