package codedir

import "time"

var timeNow = time.Now
