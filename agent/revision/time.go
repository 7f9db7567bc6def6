package revision

import "time"

var timeNow = time.Now
