from vidline._console import main

main()
