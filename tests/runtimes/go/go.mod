module pmaptrace/gogrower

go 1.19
