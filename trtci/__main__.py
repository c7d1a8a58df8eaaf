from trtci.cli import main

main()
