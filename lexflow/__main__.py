from lexflow.cli import main

main()
