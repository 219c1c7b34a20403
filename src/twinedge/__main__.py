from twinedge.cli import main

main()
