module leaktests

go 1.21
