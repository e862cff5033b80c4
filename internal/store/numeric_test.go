package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskd/taskd/internal/pgtest"
	"github.com/taskd/taskd/internal/strictjson"
)

// TestStorableNumberAgreesWithPostgreSQL checks strictjson.StorableNumber,
// which keeps JSON numbers PostgreSQL's numeric type cannot hold out of
// taskd (they fail the statement that stores them, and in a completion
// every completion behind it), against the server itself: numbers at and
// around the edges of the range, cast to jsonb one by one.
func TestStorableNumberAgreesWithPostgreSQL(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t, 1)
	ctx := context.Background()
	nums := []string{"0", "-0", "1e131071", "1e131072", "0e1073741822", "0e1073741823", "0e-16383", "0e-16384", "1e-16383", "1e-16384"}
	r := rand.New(rand.NewPCG(1, 2))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "000123456789"[r.IntN(12)]
		}
		return string(b)
	}
	for range 300 {
		num := ""
		if r.IntN(4) == 0 {
			num = "-"
		}
		intPart := digits(1 + r.IntN(4))
		if len(intPart) > 1 && intPart[0] == '0' {
			intPart = "1" + intPart[1:] // JSON allows no leading zero
		}
		num += intPart
		if r.IntN(2) == 0 {
			num += "." + digits(1+r.IntN(4))
		}
		// An exponent within a few places of either edge.
		if r.IntN(2) == 0 {
			num += fmt.Sprintf("e%d", 131068+r.IntN(8))
		} else {
			num += fmt.Sprintf("e-%d", 16380+r.IntN(8))
		}
		nums = append(nums, num)
	}
	var storable, not int
	for _, num := range nums {
		_, err := pool.Exec(ctx, "SELECT $1::text::jsonb", num)
		var pgErr *pgconn.PgError
		pgStores := err == nil
		if err != nil && (!errors.As(err, &pgErr) || pgErr.Code != "22003") {
			t.Fatalf("%s: %v", num, err)
		}
		if got := strictjson.StorableNumber([]byte(num)); got != pgStores {
			t.Errorf("StorableNumber(%s) = %v; PostgreSQL stores it: %v", num, got, pgStores)
		}
		if pgStores {
			storable++
		} else {
			not++
		}
	}
	if storable < 50 || not < 50 {
		t.Errorf("%d storable and %d not: the cases miss an edge", storable, not)
	}
}
