from vultus.cli import main

main()
