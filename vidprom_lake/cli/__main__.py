from vidprom_lake.cli import main

main()
