module example.com/notlinux

go 1.26
