package cli

import "strconv"

// counted writes a count with its noun in the right number: "1 record",
// "2 records". plural is the noun's plural form ("copies" for "copy").
func counted[N ~int | ~int32 | ~int64](n N, singular, plural string) string {
	noun := plural
	if n == 1 {
		noun = singular
	}
	return strconv.FormatInt(int64(n), 10) + " " + noun
}
