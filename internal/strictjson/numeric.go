package strictjson

import "bytes"

// PostgreSQL keeps a JSON number in jsonb as its numeric type, whose range
// is narrower than JSON's: at most 131,072 digits before the decimal point
// and 16,383 after it (the display scale, trailing zeros included), and an
// exponent within ±(2³¹−1)/2 even for a zero. A value outside it fails the
// whole statement that stores it ("value overflows numeric format",
// SQLSTATE 22003): an insert of a task, and River's completion of a batch of
// tasks, which River then retries with every later completion of the
// process behind it. TestStorableNumberAgreesWithPostgreSQL (internal/store)
// checks these limits against the server.
const (
	numericMaxWeightDigits = 131072
	numericMaxScale        = 16383
	numericMaxExponent     = 1<<30 - 1 // (2³¹−1)/2, rounded down
)

// NumberRange says what is wrong with a number StorableNumber refuses.
const NumberRange = "outside the range PostgreSQL can store (at most 131072 digits before the decimal point and 16383 after it)"

// NumberRangeMessage is the problem a number outside PostgreSQL's numeric
// range gets.
const NumberRangeMessage = "number " + NumberRange

// StorableNumber reports whether the valid JSON number num fits
// PostgreSQL's numeric type (see numericMaxWeightDigits).
func StorableNumber(num []byte) bool {
	i := 0
	if i < len(num) && num[i] == '-' {
		i++
	}
	intStart := i
	for i < len(num) && isDigit(num[i]) {
		i++
	}
	intDigits := num[intStart:i]
	var fracDigits []byte
	if i < len(num) && num[i] == '.' {
		i++
		fracStart := i
		for i < len(num) && isDigit(num[i]) {
			i++
		}
		fracDigits = num[fracStart:i]
	}
	exp := 0
	if i < len(num) && (num[i] == 'e' || num[i] == 'E') {
		i++
		negative := false
		if i < len(num) && (num[i] == '+' || num[i] == '-') {
			negative = num[i] == '-'
			i++
		}
		for i < len(num) && num[i] == '0' {
			i++
		}
		for ; i < len(num); i++ {
			exp = exp*10 + int(num[i]-'0')
			if exp >= numericMaxExponent {
				return false
			}
		}
		if negative {
			exp = -exp
		}
	}
	if max(0, len(fracDigits)-exp) > numericMaxScale {
		return false
	}
	// The most significant nonzero digit's place: 0 for units, 1 for tens.
	if k := bytes.IndexFunc(intDigits, nonZero); k >= 0 {
		return len(intDigits)-1-k+exp < numericMaxWeightDigits
	}
	if k := bytes.IndexFunc(fracDigits, nonZero); k >= 0 {
		return -1-k+exp < numericMaxWeightDigits
	}
	return true // zero
}

func nonZero(r rune) bool { return r != '0' }

// FindUnstorableNumber reports the byte offset of the first number in the
// valid JSON document data that PostgreSQL's numeric type cannot hold
// (StorableNumber), for JSON that did not pass through Unmarshal, which
// reports such a number as an error naming its field.
func FindUnstorableNumber(data []byte) (offset int, found bool) {
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '"':
			end, _, ok := scanString(data, i)
			if !ok {
				return 0, false
			}
			i = end
		case c == '-' || isDigit(c):
			end, ok := numberEnd(data, i)
			if !ok {
				return 0, false
			}
			if !StorableNumber(data[i:end]) {
				return i, true
			}
			i = end
		default:
			i++
		}
	}
	return 0, false
}
