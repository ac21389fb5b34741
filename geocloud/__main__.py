from geocloud.cli import main

main()
