package migrations

import (
	"errors"

	"github.com/uptrace/bun/driver/pgdriver"
)

func isUndefinedTable(err error) bool {
	var pgErr pgdriver.Error
	return errors.As(err, &pgErr) && pgErr.Field('C') == "42P01"
}
